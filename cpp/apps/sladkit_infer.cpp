// sladkit-infer BUNDLE IMAGE... [options]: runs a sladkit bundle on images and prints one JSON line per image,
// in the schema `sladkit predict` prints (docs/design.md, "Prediction output").
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "sladkit/sladkit.hpp"

namespace {

const char* kUsage =
    "usage: sladkit-infer BUNDLE IMAGE... [--top-k N] [--backend NAME] [--model FILE]\n"
    "                     [--save-mask FILE.png] [--dump-logits FILE] [--dump-input FILE]\n"
    "  --top-k N           classes to print for a cls bundle (default 5)\n"
    "  --backend NAME      onnxruntime or tensorrt (default onnxruntime; compiled in: see --help)\n"
    "  --model FILE        model file of the bundle (default model.onnx; the engine for tensorrt)\n"
    "  --save-mask FILE    seg bundles: write the class-index mask as an 8-bit PNG (one IMAGE)\n"
    "  --dump-logits FILE  write the raw output tensor as float32 little-endian (one IMAGE)\n"
    "  --dump-input FILE   write the model input tensor (float32 NCHW or uint8 NHWC) as raw bytes (one IMAGE)\n";

struct Args {
  std::string bundle, backend = "onnxruntime", model, save_mask, dump_logits, dump_input;
  std::vector<std::string> images;
  int top_k = 5;
};

Args parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::string names;
      for (const auto& n : sladkit::backends()) names += " " + n;
      std::cout << kUsage << "compiled-in backends:" << names << "\n";
      std::exit(0);
    } else if (arg == "--top-k") {
      const std::string v = value();
      std::size_t used = 0;
      try {
        a.top_k = std::stoi(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != v.size()) throw std::invalid_argument("--top-k must be an integer (got " + v + ")");
      if (a.top_k < 1) throw std::invalid_argument("--top-k must be >= 1 (got " + v + ")");
    } else if (arg == "--backend") {
      a.backend = value();
    } else if (arg == "--model") {
      a.model = value();
    } else if (arg == "--save-mask") {
      a.save_mask = value();
    } else if (arg == "--dump-logits") {
      a.dump_logits = value();
    } else if (arg == "--dump-input") {
      a.dump_input = value();
    } else if (arg.rfind("--", 0) == 0) {
      throw std::invalid_argument("unknown option " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() < 2) throw std::invalid_argument("expected BUNDLE and at least one IMAGE");
  a.bundle = positional[0];
  a.images.assign(positional.begin() + 1, positional.end());
  for (const auto* option : {&a.save_mask, &a.dump_logits, &a.dump_input})
    if (!option->empty() && a.images.size() > 1)
      throw std::invalid_argument("--save-mask, --dump-logits and --dump-input take one IMAGE, got " +
                                  std::to_string(a.images.size()));
  return a;
}

void write_raw(const std::string& file, const void* data, std::size_t bytes) {
  std::ofstream out(file, std::ios::binary);
  out.write(static_cast<const char*>(data), std::streamsize(bytes));
  if (!out) throw sladkit::Error("cannot write " + file);
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

double rounded(double score) { return std::round(score * 1e6) / 1e6; }  // as Python's round(score, 6)

// One "Prediction output" record (docs/design.md): image, task, then top (cls) or mask and classes (seg).
nlohmann::json predict(sladkit::Predictor& predictor, const std::string& file, const Args& args) {
  const auto& m = predictor.manifest();
  const sladkit::Image image = sladkit::load_image(file);
  auto start = std::chrono::steady_clock::now();
  const sladkit::InputTensor input = predictor.prepare(image);
  const double preprocess_ms = ms_since(start);
  start = std::chrono::steady_clock::now();
  const sladkit::Tensor logits = predictor.infer(input);
  const double infer_ms = ms_since(start);
  if (!args.dump_input.empty()) write_raw(args.dump_input, input.data(), input.bytes());
  if (!args.dump_logits.empty()) write_raw(args.dump_logits, logits.data.data(), logits.data.size() * sizeof(float));

  nlohmann::json out = {{"image", file}, {"task", m.task}};
  if (m.task == "cls") {
    out["top"] = nlohmann::json::array();
    for (const auto& p : sladkit::top_k(logits, m.labels, args.top_k))
      out["top"].push_back({{"index", p.index}, {"label", p.label}, {"score", rounded(p.score)}});
  } else {
    const sladkit::Mask mask = sladkit::argmax_mask(logits);
    std::vector<std::int64_t> counts(std::max<std::size_t>(m.labels.size(), logits.shape[1]), 0);
    for (auto c : mask.classes) ++counts[std::size_t(c)];
    out["mask"] = {{"height", mask.height}, {"width", mask.width}, {"coordinates", "centre crop"}};
    out["classes"] = nlohmann::json::array();
    for (std::size_t c = 0; c < counts.size(); ++c)
      out["classes"].push_back(
          {{"index", c}, {"label", c < m.labels.size() ? m.labels[c] : std::to_string(c)}, {"pixels", counts[c]}});
    if (!args.save_mask.empty()) {
      if (counts.size() > 256) throw sladkit::Error("--save-mask: more than 256 classes do not fit a PNG");
      sladkit::save_gray_png(args.save_mask, mask.width, mask.height,
                             std::vector<std::uint8_t>(mask.classes.begin(), mask.classes.end()));
      out["mask"]["file"] = args.save_mask;
    }
  }
  out["timing_ms"] = {{"preprocess", preprocess_ms}, {"infer", infer_ms}};  // sladkit-infer's optional field
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse(argc, argv);
  } catch (const std::exception& e) {  // std::invalid_argument, also from std::stoi
    std::cerr << "sladkit-infer: error: " << e.what() << "\n" << kUsage;
    return 2;
  }
  try {
    sladkit::Predictor predictor(args.bundle, {args.backend, args.model});
    const auto& m = predictor.manifest();
    if (!args.save_mask.empty() && m.task != "seg")
      throw sladkit::Error("--save-mask needs a seg bundle; " + args.bundle + " is a " + m.task + " bundle");
    for (const auto& file : args.images) std::cout << predict(predictor, file, args).dump() << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "sladkit-infer: error: " << e.what() << "\n";
    return 1;
  }
}
