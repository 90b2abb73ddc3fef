"""ONNX Runtime: CPU, and CUDA / TensorRT execution providers where this onnxruntime build has them."""

from __future__ import annotations

import numpy as np

from sladkit.runtime.artifacts import INPUT, OUTPUT
from sladkit.runtime.backends.base import Backend, BackendError

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    artifact_kinds = ("bundle", "onnx")

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False, "onnxruntime is not installed (pip install 'sladkit[runtime]')"
        return True, ""

    def _load(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        providers = [p for p in PROVIDER_ORDER if p in available]
        try:
            self.session = ort.InferenceSession(str(self.artifact.model_file), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendError(
                f"ONNX Runtime cannot load {self.artifact.model_file}: {str(e).splitlines()[0]}"
            ) from None
        self.device = self.session.get_providers()[0].removesuffix("ExecutionProvider").lower()

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {INPUT: batch})[0]

    def close(self) -> None:
        self.session = None
        super().close()
