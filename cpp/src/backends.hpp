// Internal: the factories of the compiled-in backends (see predictor.cpp's registry).
#pragma once

#include "sladkit/sladkit.hpp"

namespace sladkit {

#ifdef SLADKIT_WITH_ONNXRUNTIME
std::unique_ptr<Backend> create_onnxruntime_backend(const Manifest& manifest,
                                                    const std::filesystem::path& model_file);
#endif
#ifdef SLADKIT_WITH_TENSORRT
std::unique_ptr<Backend> create_tensorrt_backend(const Manifest& manifest,
                                                 const std::filesystem::path& model_file);
#endif

}  // namespace sladkit
