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

// One entry of manifest.json's "artifacts": a file of the bundle with its size and SHA-256.
struct Artifact {
  std::string file;
  std::int64_t bytes = -1;  // -1: not given
  std::string sha256;       // 64 lowercase hex digits; empty: not given
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
  std::vector<Artifact> artifacts;
};

// Reads and checks BUNDLE/manifest.json; throws Error on a missing file or a schema mismatch.
Manifest load_manifest(const std::filesystem::path& bundle_dir);
// Checks the size and SHA-256 of every artifact the manifest lists, as Python's verify_bundle does; engines
// and engine.json are skipped (they belong to the device and are checked against their own stamp, below).
// Throws Error naming the first file that is missing or does not match.
void verify_bundle(const Manifest& manifest);
// Whether a file is a TensorRT engine by its name: .engine, .plan or .trt.
bool is_engine_file(const std::filesystem::path& file);

// SHA-256 (FIPS 180-4) as 64 lowercase hex digits.
std::string sha256_hex(const void* data, std::size_t bytes);
std::string sha256_file(const std::filesystem::path& file);

// An engine's entry in the engine.json beside it (schema version 1, written by sladkit/engine_stamp.py):
// what built it, so that it is loaded only where NVIDIA's rules say it runs.
struct EngineStamp {
  std::string engine;                  // file name
  std::string sha256;                  // of the engine's bytes
  std::string tensorrt_version;        // the TensorRT that built it: "10.3.0" (trtexec) or "10.3.0.30"
  std::string precision;
  std::string gpu;                     // name; empty when not stamped
  std::string compute_capability;      // "8.7"; empty: not stamped (the GPU is then not checked)
  bool version_compatible = false;     // built with --versionCompatible
  std::string hardware_compatibility;  // "none" or "ampere+"
  std::string onnx_file, onnx_sha256;  // the bundle file it was built from; empty when not stamped
};

// Reads and validates `engine`'s stamp; with `verify`, also its SHA-256 against the engine's bytes. Throws
// Error (no engine.json, malformed, not describing this engine, a field of the wrong type, other bytes).
EngineStamp read_engine_stamp(const std::filesystem::path& engine, bool verify = true);
// read_engine_stamp (verified) and, when the stamp names the ONNX file it was built from, that file's
// SHA-256 against the manifest's: an engine built from another model is refused.
EngineStamp check_engine(const Manifest& manifest, const std::filesystem::path& engine);

struct GpuInfo {
  std::string name;
  std::string compute_capability;  // "8.7"; empty: unknown (not checked)
};
// Refuses (Error naming the rule) an engine that NVIDIA's rules say cannot run on this TensorRT and GPU:
// the exact version that built it unless version-compatible (then the same or a later one of the same
// major, or 8 -> 9/10, 10 -> 11), the same compute capability unless built ampere+ (then 8.0 and later).
// The same rules as sladkit/engine_stamp.py::check_fits.
void check_engine_fits(const EngineStamp& stamp, const std::string& tensorrt_version, const GpuInfo& gpu);
// getInferLibVersion()'s number as major.minor.patch: 100300 -> "10.3.0" (TensorRT >= 10), 8502 -> "8.5.2".
std::string tensorrt_version_string(int number);

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
// Loads `model_file` (the tensorrt backend first runs check_engine and check_engine_fits on it). The
// bundle's other files are not verified here: Predictor does that.
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

// A bundle, ready to run: load once, call classify/segment per image. Loading verifies the bundle
// (verify_bundle) and refuses a model file the manifest does not list (engines excepted).
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
