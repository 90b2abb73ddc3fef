// sladkit-test-driver: the library's pure checks, one call per command, for tests/cpp/test_verify.py to
// compare with Python (hashlib, sladkit.engine_stamp) on the same files. Not installed.
//   sha256 FILE...                    one hex digest per line
//   stamp ENGINE [--no-verify]        read_engine_stamp, printed as JSON
//   engine BUNDLE ENGINE              check_engine against BUNDLE/manifest.json (no verify_bundle)
//   fits ENGINE TENSORRT_VERSION CC   check_engine_fits (stamp read without verify; CC "" for unknown)
//   tensorrt-version NUMBER           tensorrt_version_string
// Errors: one line "error: ..." on stderr, exit 1.
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sladkit/sladkit.hpp"

namespace {

nlohmann::json to_json(const sladkit::EngineStamp& s) {
  return {{"engine", s.engine},
          {"sha256", s.sha256},
          {"tensorrt_version", s.tensorrt_version},
          {"precision", s.precision},
          {"gpu", s.gpu},
          {"compute_capability", s.compute_capability},
          {"version_compatible", s.version_compatible},
          {"hardware_compatibility", s.hardware_compatibility},
          {"onnx_file", s.onnx_file},
          {"onnx_sha256", s.onnx_sha256}};
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    const std::string command = args.empty() ? "" : args[0];
    if (command == "sha256" && args.size() >= 2) {
      for (std::size_t i = 1; i < args.size(); ++i) std::cout << sladkit::sha256_file(args[i]) << "\n";
    } else if (command == "stamp" && (args.size() == 2 || (args.size() == 3 && args[2] == "--no-verify"))) {
      std::cout << to_json(sladkit::read_engine_stamp(args[1], args.size() == 2)).dump() << "\n";
    } else if (command == "engine" && args.size() == 3) {
      std::cout << to_json(sladkit::check_engine(sladkit::load_manifest(args[1]), args[2])).dump() << "\n";
    } else if (command == "fits" && args.size() == 4) {
      sladkit::check_engine_fits(sladkit::read_engine_stamp(args[1], false), args[2], {"this GPU", args[3]});
      std::cout << "ok\n";
    } else if (command == "tensorrt-version" && args.size() == 2) {
      std::cout << sladkit::tensorrt_version_string(std::stoi(args[1])) << "\n";
    } else {
      std::cerr << "usage: sladkit-test-driver sha256|stamp|engine|fits|tensorrt-version ... (see driver.cpp)\n";
      return 2;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
