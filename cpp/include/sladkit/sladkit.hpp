// sladkit C++ inference: reads a sladkit deployment bundle (manifest.json + model files), preprocesses an
// image exactly as the Python reference does (sladkit/data/transforms.py::preprocess_eval) and runs the
// model with ONNX Runtime or TensorRT. Every failure is a sladkit::Error whose message says what to do.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace sladkit {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An 8-bit RGB image: rows top to bottom, pixels interleaved, (H, W, 3).
struct Image {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;  // width * height * 3
};

// PNG, JPEG, BMP, ... (stb_image), converted to 8-bit RGB (alpha dropped, grey replicated).
Image load_image(const std::filesystem::path& file);
// Writes a single-channel 8-bit PNG (e.g. a segmentation mask of class indices).
void save_gray_png(const std::filesystem::path& file, int width, int height,
                   const std::vector<std::uint8_t>& values);

enum class Interpolation { Nearest, Bilinear, Bicubic };  // PIL's filters of the same names

struct Preprocessing {
  bool in_graph = false;  // the model takes the uint8 NHWC crop and normalises it itself
  int resize = 0;         // the shorter side is resized to this
  int center_crop = 0;    // side of the square centre crop = the model's input size
  Interpolation interpolation = Interpolation::Bicubic;
  std::array<float, 3> mean{};  // per RGB channel, on pixel / 255
  std::array<float, 3> std{};
};

// What the runtime needs from manifest.json (schema "sladkit-bundle", version 1).
struct Manifest {
  std::filesystem::path dir;
  std::string task;  // "cls" | "seg"
  std::vector<std::string> labels;
  std::string input_name;
  std::string output_name;
  int batch_max = 1;
  Preprocessing preprocessing;
  std::string precision;    // the target's precision: "int8", "fp16", "fp32"
  std::string engine_file;  // the TensorRT engine this bundle names (built by build_engine.sh)
};

// Reads and checks BUNDLE/manifest.json; throws Error on a missing file or a schema mismatch.
Manifest load_manifest(const std::filesystem::path& bundle_dir);

// PIL's Image.resize((width, height), resample=...) on an RGB image, bit for bit.
Image resize(const Image& image, int width, int height, Interpolation interpolation);
// The eval resize (shorter side to p.resize) and centre crop: a (S, S, 3) uint8 image, S = p.center_crop.
Image resize_crop(const Image& image, const Preprocessing& p);
// (S, S, 3) uint8 -> (3, S, S) float32: pixel / 255, minus mean, divided by std.
std::vector<float> normalize(const Image& crop, const Preprocessing& p);

// A model input: float32 (N, 3, S, S) or, for bundles with in-graph preprocessing, uint8 (N, S, S, 3).
struct InputTensor {
  std::vector<std::int64_t> shape;
  bool is_uint8 = false;
  std::vector<float> f32;
  std::vector<std::uint8_t> u8;
  const void* data() const { return is_uint8 ? static_cast<const void*>(u8.data()) : f32.data(); }
  std::size_t bytes() const { return is_uint8 ? u8.size() : f32.size() * sizeof(float); }
};

// A float32 output: (N, C) class logits or (N, C, H, W) per-pixel logits.
struct Tensor {
  std::vector<std::int64_t> shape;
  std::vector<float> data;
};

// A model loaded by one runtime. Backends are compiled in when their dependency was found.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual Tensor infer(const InputTensor& input) = 0;
};

std::vector<std::string> backends();  // compiled-in backend names, e.g. {"onnxruntime"}
std::unique_ptr<Backend> create_backend(const std::string& name, const Manifest& manifest,
                                        const std::filesystem::path& model_file);

struct Prediction {
  int index = 0;
  std::string label;
  float score = 0.f;  // softmax probability
};

// Argmax class per pixel, (H, W) row-major, in the centre crop's coordinates.
struct Mask {
  int width = 0;
  int height = 0;
  std::vector<std::int32_t> classes;
};

std::vector<Prediction> top_k(const Tensor& logits, const std::vector<std::string>& labels, int k);
Mask argmax_mask(const Tensor& logits);

struct PredictorOptions {
  std::string backend = "onnxruntime";
  std::string model;  // a file of the bundle; default: model.onnx, or the bundle's engine for tensorrt
};

// A bundle, ready to run: load once, call classify/segment per image.
class Predictor {
 public:
  explicit Predictor(const std::filesystem::path& bundle_dir, const PredictorOptions& options = {});
  InputTensor prepare(const Image& image) const;  // resize, crop and (unless in-graph) normalise
  Tensor infer(const InputTensor& input) { return backend_->infer(input); }
  Tensor run(const Image& image) { return infer(prepare(image)); }
  std::vector<Prediction> classify(const Image& image, int k = 5);
  Mask segment(const Image& image);
  const Manifest& manifest() const { return manifest_; }
  const std::filesystem::path& model_file() const { return model_file_; }

 private:
  Manifest manifest_;
  std::filesystem::path model_file_;
  std::unique_ptr<Backend> backend_;
};

}  // namespace sladkit
