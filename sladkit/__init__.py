"""sladkit: SLAD distillation of vision foundation models, export to ONNX/TensorRT, profiling on Jetson."""

__version__ = "0.1.0"
