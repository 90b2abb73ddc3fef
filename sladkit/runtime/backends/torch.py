"""PyTorch, for training run folders: the merged student, as the reference the exported artifacts match."""

from __future__ import annotations

import numpy as np

from sladkit.runtime.backends.base import Backend


class TorchBackend(Backend):
    name = "torch"
    artifact_kinds = ("run",)
    extra = "train"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import timm  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            return False, "torch and timm are not installed (pip install 'sladkit[train]')"
        return True, ""

    def _load(self) -> None:
        import torch

        from sladkit.models.run_model import load_run_model, merge_adapters

        if self.threads:
            torch.set_num_threads(self.threads)
        model, _ = load_run_model(self.artifact.path)
        self.model = merge_adapters(model)
        self.torch = torch

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(np.ascontiguousarray(batch))).numpy()
