// TensorRT backend: runs a serialized engine built on the device (the bundle's build_engine.sh).
//
// NOT COMPILED OR RUN WHERE THIS LIBRARY IS DEVELOPED (no GPU, no TensorRT there). It is written against
// TensorRT's documented C++ API: 8.x (JetPack 4.6/5: bindings, setBindingDimensions, enqueueV2) and 10.x
// (JetPack 6: named tensors, setInputShape, setTensorAddress, enqueueV3), chosen by NV_TENSORRT_MAJOR.
// CMake compiles it only when NvInfer.h, libnvinfer and the CUDA runtime are found. Before deserializing, the
// engine is checked against its engine.json (engine_stamp.cpp, which is compiled and tested everywhere).
#include <fstream>
#include <iostream>
#include <iterator>
#include <type_traits>

#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include "backends.hpp"

namespace sladkit {
namespace {

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw Error(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(status));
}

class Logger : public nvinfer1::ILogger {
  void log(Severity severity, const char* message) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "[TensorRT] " << message << "\n";
  }
};

// Device memory, freed on destruction.
struct DeviceBuffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  void reserve(std::size_t n) {
    if (n <= bytes) return;
    if (ptr) cudaFree(ptr);
    ptr = nullptr;
    check_cuda(cudaMalloc(&ptr, n), "cudaMalloc");
    bytes = n;
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
};

// This machine's GPU from the CUDA runtime (compute capability "major.minor", as the stamp records it);
// empty fields when the CUDA runtime cannot tell (the GPU is then not checked beforehand).
GpuInfo cuda_gpu() {
  int device = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) return {};
  return {prop.name, std::to_string(prop.major) + "." + std::to_string(prop.minor)};
}

class TensorRTBackend : public Backend {
 public:
  TensorRTBackend(const Manifest& manifest, const std::filesystem::path& engine_file)
      : input_name_(manifest.input_name), output_name_(manifest.output_name) {
    // engine.json: the engine's SHA-256, the ONNX it was built from, then NVIDIA's version and GPU rules,
    // with the library actually loaded (getInferLibVersion), not the headers built against.
    const EngineStamp stamp = check_engine(manifest, engine_file);
    check_engine_fits(stamp, tensorrt_version_string(getInferLibVersion()), cuda_gpu());
    std::ifstream in(engine_file, std::ios::binary);
    const std::vector<char> blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (runtime_) engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_)
      throw Error("TensorRT " + tensorrt_version_string(getInferLibVersion()) + " cannot load " + engine_file.string() +
                  "; engines only load with the TensorRT version and GPU that built them: rebuild it on this "
                  "device with the bundle's build_engine.sh");
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error("TensorRT could not create an execution context");
    check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate");
  }
  ~TensorRTBackend() override {
    if (stream_) cudaStreamDestroy(stream_);
  }

  Tensor infer(const InputTensor& input) override {
    nvinfer1::Dims dims{};
    dims.nbDims = int(input.shape.size());
    for (int i = 0; i < dims.nbDims; ++i)
      dims.d[i] = static_cast<std::remove_reference_t<decltype(dims.d[0])>>(input.shape[i]);
#if NV_TENSORRT_MAJOR >= 10
    if (!context_->setInputShape(input_name_.c_str(), dims))
      throw Error("the engine rejects input shape of batch " + std::to_string(input.shape[0]) +
                  " (outside its optimisation profile?)");
    const nvinfer1::Dims out_dims = context_->getTensorShape(output_name_.c_str());
    if (engine_->getTensorDataType(output_name_.c_str()) != nvinfer1::DataType::kFLOAT)
      throw Error("engine output '" + output_name_ + "' is not float32");
#else
    const int in_index = engine_->getBindingIndex(input_name_.c_str());
    const int out_index = engine_->getBindingIndex(output_name_.c_str());
    if (in_index < 0 || out_index < 0)
      throw Error("the engine has no tensor named '" + input_name_ + "' or '" + output_name_ + "'");
    if (!context_->setBindingDimensions(in_index, dims))
      throw Error("the engine rejects input shape of batch " + std::to_string(input.shape[0]));
    const nvinfer1::Dims out_dims = context_->getBindingDimensions(out_index);
    if (engine_->getBindingDataType(out_index) != nvinfer1::DataType::kFLOAT)
      throw Error("engine output '" + output_name_ + "' is not float32");
#endif
    Tensor out;
    std::size_t count = 1;
    for (int i = 0; i < out_dims.nbDims; ++i) {
      out.shape.push_back(out_dims.d[i]);
      count *= std::size_t(out_dims.d[i]);
    }
    out.data.resize(count);
    device_in_.reserve(input.bytes());
    device_out_.reserve(count * sizeof(float));
    check_cuda(cudaMemcpyAsync(device_in_.ptr, input.data(), input.bytes(), cudaMemcpyHostToDevice, stream_),
               "copy to device");
#if NV_TENSORRT_MAJOR >= 10
    context_->setTensorAddress(input_name_.c_str(), device_in_.ptr);
    context_->setTensorAddress(output_name_.c_str(), device_out_.ptr);
    const bool ok = context_->enqueueV3(stream_);
#else
    std::vector<void*> bindings(engine_->getNbBindings(), nullptr);
    bindings[in_index] = device_in_.ptr;
    bindings[out_index] = device_out_.ptr;
    const bool ok = context_->enqueueV2(bindings.data(), stream_, nullptr);
#endif
    if (!ok) throw Error("TensorRT inference failed (see the [TensorRT] messages above)");
    check_cuda(cudaMemcpyAsync(out.data.data(), device_out_.ptr, count * sizeof(float), cudaMemcpyDeviceToHost,
                               stream_),
               "copy from device");
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    return out;
  }

 private:
  Logger logger_;
  std::string input_name_, output_name_;
  // TensorRT >= 8 objects are released with delete; declared in construction order, destroyed in reverse.
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer device_in_, device_out_;
};

}  // namespace

std::unique_ptr<Backend> create_tensorrt_backend(const Manifest& manifest,
                                                 const std::filesystem::path& model_file) {
  return std::make_unique<TensorRTBackend>(manifest, model_file);
}

}  // namespace sladkit
