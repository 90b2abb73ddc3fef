// manifest.json -> sladkit::Manifest, with the checks that make a wrong bundle fail early and clearly.
#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "sladkit/sladkit.hpp"

namespace sladkit {
namespace {

using nlohmann::json;

Interpolation parse_interpolation(const std::string& name) {
  if (name == "nearest") return Interpolation::Nearest;
  if (name == "bilinear") return Interpolation::Bilinear;
  if (name == "bicubic") return Interpolation::Bicubic;
  throw Error("preprocessing.interpolation is '" + name + "'; expected nearest, bilinear or bicubic");
}

std::vector<Artifact> parse_artifacts(const json& doc) {
  const auto& list = doc.value("artifacts", json());
  const auto entry = [](const json& a) { return a.is_object() && a.contains("file") && a["file"].is_string(); };
  if (!list.is_array() || list.empty() || !std::all_of(list.begin(), list.end(), entry))
    throw Error("field 'artifacts' is missing, empty or malformed (expected a list of {\"file\": ..., "
                "\"sha256\": ...} objects); export the bundle again");
  std::vector<Artifact> artifacts;
  for (const auto& a : list) {
    Artifact artifact;
    artifact.file = a["file"].get<std::string>();
    if (a.contains("bytes") && a["bytes"].is_number_integer()) artifact.bytes = a["bytes"].get<std::int64_t>();
    if (a.contains("sha256") && a["sha256"].is_string()) artifact.sha256 = a["sha256"].get<std::string>();
    artifacts.push_back(std::move(artifact));
  }
  return artifacts;
}

std::array<float, 3> rgb(const json& values, const char* what) {
  if (!values.is_array() || values.size() != 3)
    throw Error(std::string("preprocessing.") + what + " must be 3 numbers, one per RGB channel");
  return {values[0].get<float>(), values[1].get<float>(), values[2].get<float>()};
}

}  // namespace

Manifest load_manifest(const std::filesystem::path& bundle_dir) {
  const auto file = bundle_dir / "manifest.json";
  if (!std::filesystem::is_directory(bundle_dir))
    throw Error(bundle_dir.string() + " is not a folder; expected a sladkit bundle (sladkit export --out)");
  std::ifstream in(file);
  if (!in) throw Error(file.string() + " not found; expected a sladkit bundle made by `sladkit export`");
  json doc;
  try {
    doc = json::parse(in);
  } catch (const json::exception& e) {
    throw Error(file.string() + " is not valid JSON (" + e.what() + "); re-export the bundle");
  }
  const auto schema = doc.value("schema", std::string("(none)"));
  const auto version = doc.value("schema_version", -1);
  if (schema != "sladkit-bundle" || version != 1)
    throw Error(file.string() + " has schema '" + schema + "' version " + std::to_string(version) +
                "; this library reads 'sladkit-bundle' version 1: use the sladkit version that exported it");

  try {
    Manifest m;
    m.dir = bundle_dir;
    m.task = doc.at("task").get<std::string>();
    if (m.task != "cls" && m.task != "seg") throw Error("task is '" + m.task + "'; expected cls or seg");
    m.labels = doc.at("labels").get<std::vector<std::string>>();
    const auto& input = doc.at("input");
    m.input_name = input.at("name").get<std::string>();
    m.batch_max = input.at("batch").at("max").get<int>();
    m.output_name = doc.at("outputs").at(0).at("name").get<std::string>();

    const auto& pre = doc.at("preprocessing");
    auto& p = m.preprocessing;
    p.in_graph = pre.at("in_graph").get<bool>();
    p.resize = pre.at("resize").get<int>();
    p.center_crop = pre.at("center_crop").get<int>();
    p.interpolation = parse_interpolation(pre.at("interpolation").get<std::string>());
    p.mean = rgb(pre.at("mean"), "mean");
    p.std = rgb(pre.at("std"), "std");
    if (p.center_crop < 1 || p.resize < p.center_crop)
      throw Error("preprocessing has resize " + std::to_string(p.resize) + " and center_crop " +
                  std::to_string(p.center_crop) + "; expected 1 <= center_crop <= resize");
    if (pre.value("channel_order", "RGB") != "RGB") throw Error("preprocessing.channel_order must be RGB");
    const auto layout = input.at("layout").get<std::string>(), dtype = input.at("dtype").get<std::string>();
    const auto expected = p.in_graph ? std::make_pair("NHWC", "uint8") : std::make_pair("NCHW", "float32");
    if (layout != expected.first || dtype != expected.second)
      throw Error("input is " + layout + " " + dtype + " but preprocessing.in_graph is " +
                  (p.in_graph ? "true" : "false") + "; expected " + expected.first + " " + expected.second);

    m.artifacts = parse_artifacts(doc);
    const auto& target = doc.at("target");
    m.precision = target.value("precision", std::string("fp32"));
    const auto& engine = doc.value("engine", json());
    if (engine.is_object() && engine.contains("engine")) {
      m.engine_file = engine.at("engine").get<std::string>();
    } else {
      const auto dla = target.value("dla_core", json());
      m.engine_file = "model." + m.precision + (dla.is_number() ? ".dla" + dla.dump() : "") + ".engine";
    }
    return m;
  } catch (const json::exception& e) {
    throw Error(file.string() + " lacks an entry or has one of the wrong type (" + e.what() +
                "); re-export the bundle with sladkit export");
  } catch (const Error& e) {
    throw Error(file.string() + ": " + e.what());
  }
}

bool is_engine_file(const std::filesystem::path& file) {
  const auto suffix = file.extension().string();
  return suffix == ".engine" || suffix == ".plan" || suffix == ".trt";
}

void verify_bundle(const Manifest& manifest) {
  const auto manifest_file = (manifest.dir / "manifest.json").string();
  for (const auto& artifact : manifest.artifacts) {
    if (artifact.file == "engine.json" || is_engine_file(artifact.file)) continue;  // checked by their stamp
    const auto path = manifest.dir / artifact.file;
    if (!std::filesystem::is_regular_file(path))
      throw Error(path.string() + " is listed in " + manifest_file + " but missing; export the bundle again");
    if (artifact.bytes < 0 || artifact.sha256.empty())
      throw Error(manifest_file + ": the entry of " + artifact.file +
                  " lacks its bytes or sha256; export the bundle again");
    if (std::int64_t(std::filesystem::file_size(path)) != artifact.bytes || sha256_file(path) != artifact.sha256)
      throw Error(path.string() + " does not match its SHA-256 in " + manifest_file +
                  " (modified or corrupt); export the bundle again");
  }
}

}  // namespace sladkit
