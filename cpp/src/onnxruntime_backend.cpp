// ONNX Runtime backend (C++ API), CPU execution provider. Compiled when ONNX Runtime was found.
#include <onnxruntime_cxx_api.h>

#include "backends.hpp"

namespace sladkit {
namespace {

class OnnxRuntimeBackend : public Backend {
 public:
  OnnxRuntimeBackend(const Manifest& manifest, const std::filesystem::path& model_file)
      : env_(ORT_LOGGING_LEVEL_WARNING, "sladkit"),
        input_name_(manifest.input_name),
        output_name_(manifest.output_name) {
    Ort::SessionOptions options;
    options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    try {
      session_ = std::make_unique<Ort::Session>(env_, model_file.c_str(), options);
    } catch (const Ort::Exception& e) {
      throw Error("ONNX Runtime cannot load " + model_file.string() + ": " + e.what());
    }
  }

  Tensor infer(const InputTensor& input) override {
    const auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    const auto type = input.is_uint8 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    // ONNX Runtime does not write to inputs; its API takes a non-const pointer.
    auto value = Ort::Value::CreateTensor(memory, const_cast<void*>(input.data()), input.bytes(),
                                          input.shape.data(), input.shape.size(), type);
    const char* inputs[] = {input_name_.c_str()};
    const char* outputs[] = {output_name_.c_str()};
    try {
      auto result = session_->Run(Ort::RunOptions{nullptr}, inputs, &value, 1, outputs, 1);
      const auto info = result[0].GetTensorTypeAndShapeInfo();
      if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
        throw Error("output '" + output_name_ + "' is not float32; expected float32 logits");
      const float* data = result[0].GetTensorData<float>();
      return Tensor{info.GetShape(), std::vector<float>(data, data + info.GetElementCount())};
    } catch (const Ort::Exception& e) {
      throw Error(std::string("ONNX Runtime inference failed: ") + e.what());
    }
  }

 private:
  Ort::Env env_;
  std::string input_name_, output_name_;
  std::unique_ptr<Ort::Session> session_;
};

}  // namespace

std::unique_ptr<Backend> create_onnxruntime_backend(const Manifest& manifest,
                                                    const std::filesystem::path& model_file) {
  if (OrtGetApiBase()->GetApi(ORT_API_VERSION) == nullptr)  // headers newer than the library
    throw Error(std::string("libonnxruntime ") + OrtGetApiBase()->GetVersionString() +
                " is older than the ONNX Runtime headers sladkit was built with (API " +
                std::to_string(ORT_API_VERSION) + "); rebuild against headers of that release or older");
  return std::make_unique<OnnxRuntimeBackend>(manifest, model_file);
}

}  // namespace sladkit
