// engine.json (the engine stamp, sladkit/engine_stamp.py) read and checked in C++: its schema, the engine's
// SHA-256, the ONNX it was built from, and NVIDIA's compatibility rules. Pure C++: compiled and tested
// without TensorRT; the TensorRT backend feeds it getInferLibVersion() and the CUDA device's properties.
#include <algorithm>
#include <cctype>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "sladkit/sladkit.hpp"

namespace sladkit {
namespace {

using nlohmann::json;

// NVIDIA's rules, worded as in sladkit/engine_stamp.py (its docstring cites the TensorRT documentation).
const char* kExactRule =
    "NVIDIA's rule (TensorRT docs, 'Support Policies'): an engine loads only with the exact TensorRT version "
    "that built it (major.minor.patch.build) unless it was built version-compatible";
const char* kCompatibleRule =
    "NVIDIA's rule for version-compatible engines (TensorRT docs, 'Version Compatibility'): built with "
    "TensorRT >= 8.6, they run on the same or a later TensorRT of the same major version (or 8 -> 9/10, 10 -> 11)";
const char* kSameGpuRule =
    "NVIDIA's rule (TensorRT docs, 'Engine Portability'): without hardware-compatibility mode an engine is "
    "not portable across GPU architectures";
const char* kAmperePlusRule =
    "NVIDIA's rule (TensorRT docs, 'Hardware Compatibility'): an engine built with hardware compatibility "
    "level ampere+ runs on compute capability 8.0 and later";
const char* kRebuild = "rebuild it here with the bundle's build_engine.sh";

std::string stamp_command(const std::string& engine) {
  return "python3 -m sladkit.engine_stamp " + engine + " --log TRTEXEC_LOG (trtexec's output)";
}

// The first four numbers of a version string, as Python's re.findall(r"\d+", version)[:4].
std::vector<long> parts(const std::string& version) {
  std::vector<long> out;
  static const std::regex number("\\d+");
  for (auto it = std::sregex_iterator(version.begin(), version.end(), number);
       it != std::sregex_iterator() && out.size() < 4; ++it)
    out.push_back(std::stol(it->str()));
  return out;
}

std::vector<long> head(const std::vector<long>& v, std::size_t n) {
  return {v.begin(), v.begin() + std::ptrdiff_t(std::min(n, v.size()))};
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool matches(const json& value, const char* pattern) {
  return value.is_string() && std::regex_match(value.get<std::string>(), std::regex(pattern));
}

void check_fields(const std::string& stamp_file, const std::string& name, const json& meta) {
  const auto bad = [&](const std::string& field, const json& value, const std::string& expected) {
    return Error(stamp_file + ": " + name + "'s " + field + " is " + value.dump() + ", expected " + expected +
                 "; rebuild the engine with build_engine.sh or restamp it with " + stamp_command(name));
  };
  if (!meta.is_object()) throw bad("entry", meta, "an object");
  const auto field = [&](const char* key, json fallback = nullptr) {
    return meta.contains(key) ? meta.at(key) : fallback;
  };
  if (!matches(field("sha256"), "^[0-9a-f]{64}$")) throw bad("sha256", field("sha256"), "64 lowercase hex digits");
  if (!matches(field("tensorrt_version"), "^\\d+\\.\\d+\\.\\d+(\\.\\d+)?$"))
    throw bad("tensorrt_version", field("tensorrt_version"), "a version like 10.3.0");
  const json precision = field("precision");
  if (!precision.is_string() || precision.get<std::string>().empty())
    throw bad("precision", precision, "a precision like int8");
  const json capability = field("compute_capability");
  if (!capability.is_null() && !matches(capability, "^\\d+\\.\\d+$"))
    throw bad("compute_capability", capability, "like 8.7");
  if (!field("version_compatible", false).is_boolean())
    throw bad("version_compatible", field("version_compatible"), "true or false");
  const json input = field("input");
  if (!input.is_null() && !input.is_object()) throw bad("input", input, "an object");
  const json batch = input.is_object() && input.contains("batch") ? input.at("batch") : json();
  const auto positive = [&](const char* k) {
    return batch.contains(k) && batch.at(k).is_number_integer() && batch.at(k).get<long>() > 0;
  };
  if (!batch.is_null() && !(batch.is_object() && positive("min") && positive("opt") && positive("max")))
    throw bad("input.batch", batch, "{min, opt, max} positive integers");
}

std::string string_or_empty(const json& meta, const char* key) {
  return meta.contains(key) && meta.at(key).is_string() ? meta.at(key).get<std::string>() : "";
}

}  // namespace

EngineStamp read_engine_stamp(const std::filesystem::path& engine, bool verify) {
  const auto stamp_file = engine.parent_path() / "engine.json";
  const std::string path = stamp_file.string(), name = engine.filename().string();
  const std::string fix =
      "rebuild the engines with build_engine.sh or restamp them with " + stamp_command("ENGINE");
  if (!std::filesystem::is_regular_file(stamp_file))
    throw Error(engine.string() + " has no engine.json beside it (its TensorRT version, GPU and SHA-256): build "
                "it with the bundle's build_engine.sh, or stamp an engine built by hand with " +
                stamp_command(engine.string()));
  std::ifstream in(stamp_file);
  if (!in) throw Error(path + " is unreadable; " + fix);
  json doc;
  try {
    doc = json::parse(in);
  } catch (const json::exception& e) {
    throw Error(path + " is not valid JSON (" + e.what() + "); " + fix);
  }
  if (!doc.is_object() || !doc.contains("engines") || !doc.at("engines").is_object())
    throw Error(path + " is not an engine stamp (expected {\"schema_version\": 1, \"engines\": {...}}); " + fix);
  const json version = doc.contains("schema_version") ? doc.at("schema_version") : json();
  if (!(version.is_number_integer() && version.get<long>() == 1))
    throw Error(path + " has schema version " + version.dump() + "; this library reads 1: " + fix);
  const json& engines = doc.at("engines");
  if (!engines.contains(name)) {
    std::string described;
    for (const auto& entry : engines.items()) described += (described.empty() ? "" : ", ") + entry.key();
    throw Error(path + " does not describe " + name + " (it describes " +
                (described.empty() ? "no engine" : described) +
                "); build it with the bundle's build_engine.sh, or stamp it with " + stamp_command(engine.string()));
  }
  const json& meta = engines.at(name);
  check_fields(path, name, meta);

  EngineStamp stamp;
  stamp.engine = name;
  stamp.sha256 = meta.at("sha256").get<std::string>();
  stamp.tensorrt_version = meta.at("tensorrt_version").get<std::string>();
  stamp.precision = meta.at("precision").get<std::string>();
  stamp.gpu = string_or_empty(meta, "gpu");
  stamp.compute_capability = string_or_empty(meta, "compute_capability");
  stamp.version_compatible = meta.value("version_compatible", false);
  const auto level = string_or_empty(meta, "hardware_compatibility");
  stamp.hardware_compatibility = level.empty() ? "none" : lower(level);
  if (meta.contains("onnx") && meta.at("onnx").is_object()) {
    stamp.onnx_file = string_or_empty(meta.at("onnx"), "file");
    stamp.onnx_sha256 = string_or_empty(meta.at("onnx"), "sha256");
  }
  if (verify && sha256_file(engine) != stamp.sha256)
    throw Error(engine.string() + " does not match the SHA-256 in " + path +
                " (modified, corrupt, or rebuilt without stamping): rebuild it with the bundle's build_engine.sh, "
                "or restamp it with " + stamp_command(engine.string()));
  return stamp;
}

EngineStamp check_engine(const Manifest& manifest, const std::filesystem::path& engine) {
  EngineStamp stamp = read_engine_stamp(engine, /*verify=*/true);
  for (const auto& artifact : manifest.artifacts) {
    if (stamp.onnx_sha256.empty() || artifact.file != stamp.onnx_file || artifact.sha256.empty()) continue;
    if (artifact.sha256 != stamp.onnx_sha256)
      throw Error(stamp.engine + " was built from another " + stamp.onnx_file + " than this bundle's (SHA-256 " +
                  stamp.onnx_sha256.substr(0, 12) + " in engine.json, " + artifact.sha256.substr(0, 12) +
                  " in manifest.json); rebuild it with the bundle's build_engine.sh");
  }
  return stamp;
}

void check_engine_fits(const EngineStamp& stamp, const std::string& tensorrt_version, const GpuInfo& gpu) {
  const auto built = parts(stamp.tensorrt_version), here = parts(tensorrt_version);
  bool fits;
  const char* rule;
  if (stamp.version_compatible) {
    const std::vector<long> min_version = {8, 6};
    fits = head(built, 2) >= min_version && head(built, 3) <= head(here, 3);
    const long b = built.empty() ? 0 : built[0], h = here.empty() ? 0 : here[0];
    fits = fits && (b == h || (b == 8 && (h == 9 || h == 10)) || (b == 10 && h == 11));
    rule = kCompatibleRule;
  } else {
    const std::size_t common = std::max<std::size_t>(3, std::min(built.size(), here.size()));  // trtexec: no build
    fits = head(built, common) == head(here, common);
    rule = kExactRule;
  }
  if (!fits)
    throw Error(stamp.engine + " was built with TensorRT " + stamp.tensorrt_version + ", this machine has " +
                tensorrt_version + "; " + rule + ": " + kRebuild);
  if (stamp.compute_capability.empty() || gpu.compute_capability.empty()) return;
  if (stamp.hardware_compatibility == "ampere+") {
    const auto have = parts(gpu.compute_capability);
    fits = !have.empty() && have[0] >= 8;
    rule = kAmperePlusRule;
  } else {
    fits = stamp.compute_capability == gpu.compute_capability;
    rule = kSameGpuRule;
  }
  if (!fits)
    throw Error(stamp.engine + " was built for a GPU of compute capability " + stamp.compute_capability + " (" +
                (stamp.gpu.empty() ? "GPU not named" : stamp.gpu) + "), this one is " + gpu.compute_capability +
                " (" + (gpu.name.empty() ? "GPU not named" : gpu.name) + "); " + rule + ": " + kRebuild);
}

std::string tensorrt_version_string(int number) {
  if (number >= 100000)  // TensorRT >= 10: major * 10000 + minor * 100 + patch
    return std::to_string(number / 10000) + "." + std::to_string(number / 100 % 100) + "." +
           std::to_string(number % 100);
  return std::to_string(number / 1000) + "." + std::to_string(number / 100 % 10) + "." +  // major * 1000 + ...
         std::to_string(number % 100);
}

}  // namespace sladkit
