"""Export stage: merge the shared LoRA, ONNX, simplify, INT8, TensorRT, deployment bundle."""
