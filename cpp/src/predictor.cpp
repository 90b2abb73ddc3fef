// The backend registry, the Predictor, and reading logits (softmax top-k, per-pixel argmax).
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "backends.hpp"

namespace sladkit {
namespace {

using Factory = std::unique_ptr<Backend> (*)(const Manifest&, const std::filesystem::path&);

const std::map<std::string, Factory>& registry() {
  static const std::map<std::string, Factory> factories = {
#ifdef SLADKIT_WITH_ONNXRUNTIME
      {"onnxruntime", &create_onnxruntime_backend},
#endif
#ifdef SLADKIT_WITH_TENSORRT
      {"tensorrt", &create_tensorrt_backend},
#endif
  };
  return factories;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "(none: rebuild with ONNX Runtime or TensorRT found)" : out;
}

}  // namespace

std::vector<std::string> backends() {
  std::vector<std::string> names;
  for (const auto& entry : registry()) names.push_back(entry.first);
  return names;
}

std::unique_ptr<Backend> create_backend(const std::string& name, const Manifest& manifest,
                                        const std::filesystem::path& model_file) {
  const auto it = registry().find(name);
  if (it == registry().end())
    throw Error("backend '" + name + "' is not compiled in; available: " + joined(backends()));
  if (!std::filesystem::is_regular_file(model_file))
    throw Error("model file " + model_file.string() + " not found" +
                (name == "tensorrt" ? "; build the engine on the device with the bundle's build_engine.sh"
                                    : "; pass --model with a file of the bundle"));
  return it->second(manifest, model_file);
}

Predictor::Predictor(const std::filesystem::path& bundle_dir, const PredictorOptions& options)
    : manifest_(load_manifest(bundle_dir)) {
  verify_bundle(manifest_);
  const std::string file = !options.model.empty()          ? options.model
                           : options.backend == "tensorrt" ? manifest_.engine_file
                                                           : "model.onnx";
  model_file_ = bundle_dir / file;  // an absolute `file` replaces bundle_dir
  const bool engine = is_engine_file(model_file_);
  if (engine && options.backend != "tensorrt")
    throw Error(file + " is a TensorRT engine: pass --backend tensorrt (or --model with an ONNX file of the bundle)");
  if (!engine && options.backend == "tensorrt")
    throw Error("the tensorrt backend runs engines (.engine, .plan, .trt), not " + file +
                ": pass --model with an engine built by the bundle's build_engine.sh");
  if (!engine) {  // a model file must be one of the bundle's, and so verified above
    std::string models;
    bool listed = false;
    for (const auto& artifact : manifest_.artifacts) {
      listed = listed || model_file_.lexically_normal() == (bundle_dir / artifact.file).lexically_normal();
      if (std::filesystem::path(artifact.file).extension() == ".onnx")
        models += (models.empty() ? "" : ", ") + artifact.file;
    }
    if (!listed)
      throw Error(file + " is not listed in " + (bundle_dir / "manifest.json").string() +
                  ", so its SHA-256 cannot be checked; its models are: " + models);
  }
  backend_ = create_backend(options.backend, manifest_, model_file_);
}

InputTensor Predictor::prepare(const Image& image) const {
  const auto& p = manifest_.preprocessing;
  const std::int64_t s = p.center_crop;
  Image crop = resize_crop(image, p);
  InputTensor input;
  input.is_uint8 = p.in_graph;
  if (p.in_graph) {
    input.shape = {1, s, s, 3};
    input.u8 = std::move(crop.pixels);
  } else {
    input.shape = {1, 3, s, s};
    input.f32 = normalize(crop, p);
  }
  return input;
}

std::vector<Prediction> Predictor::classify(const Image& image, int k) {
  if (manifest_.task != "cls") throw Error("classify() needs a cls bundle; this one is " + manifest_.task);
  return top_k(run(image), manifest_.labels, k);
}

Mask Predictor::segment(const Image& image) {
  if (manifest_.task != "seg") throw Error("segment() needs a seg bundle; this one is " + manifest_.task);
  return argmax_mask(run(image));
}

std::vector<Prediction> top_k(const Tensor& logits, const std::vector<std::string>& labels, int k) {
  if (logits.shape.size() != 2 || logits.shape[0] < 1)
    throw Error("expected class logits of shape (N, C), got rank " + std::to_string(logits.shape.size()));
  const int classes = int(logits.shape[1]);  // first image of the batch
  const float* x = logits.data.data();
  const float top = *std::max_element(x, x + classes);
  double total = 0.0;
  for (int c = 0; c < classes; ++c) total += std::exp(double(x[c]) - top);
  std::vector<int> order(classes);
  std::iota(order.begin(), order.end(), 0);
  k = std::clamp(k, 0, classes);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int a, int b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
  std::vector<Prediction> out;
  for (int i = 0; i < k; ++i) {
    const int c = order[i];
    out.push_back({c, c < int(labels.size()) ? labels[c] : std::to_string(c),
                   float(std::exp(double(x[c]) - top) / total)});
  }
  return out;
}

Mask argmax_mask(const Tensor& logits) {
  if (logits.shape.size() != 4 || logits.shape[0] < 1)
    throw Error("expected per-pixel logits of shape (N, C, H, W), got rank " +
                std::to_string(logits.shape.size()));
  const auto classes = logits.shape[1];
  Mask mask{int(logits.shape[3]), int(logits.shape[2]), {}};
  const std::size_t plane = std::size_t(mask.width) * mask.height;
  mask.classes.assign(plane, 0);
  for (std::size_t i = 0; i < plane; ++i) {
    float best = logits.data[i];
    for (std::int64_t c = 1; c < classes; ++c) {
      const float v = logits.data[c * plane + i];
      if (v > best) best = v, mask.classes[i] = std::int32_t(c);  // first maximum wins, as numpy's argmax
    }
  }
  return mask;
}

}  // namespace sladkit
