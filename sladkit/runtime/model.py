"""`load(path) -> RuntimeModel`: `predict(images)` (preprocessing, model, post-processing) and `infer(batch)`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sladkit.config import PredictConfig
from sladkit.data.transforms import normalize_eval, resize_crop_eval
from sladkit.errors import DataError
from sladkit.runtime.artifacts import Artifact, resolve
from sladkit.runtime.backends import Backend, create_backend


@dataclass
class Prediction:
    """Classification: top-k `labels`/`indices`/`scores` (softmax). Segmentation: `mask` (H, W) class indices."""

    labels: list[str] | None = None
    indices: list[int] | None = None
    scores: list[float] | None = None
    mask: np.ndarray | None = None

    def to_dict(self, labels: list[str] | None = None) -> dict:
        """The fields of a "Prediction output" record (`docs/design.md`) after `image`: `task`, then `top`
        (classification) or `mask` and `classes` (segmentation: every class of `labels`, with its pixel count)."""
        if self.mask is None:
            top = zip(self.indices, self.labels, self.scores, strict=True)
            return {"task": "cls", "top": [{"index": i, "label": n, "score": round(s, 6)} for i, n, s in top]}
        names = labels or []
        counts = np.bincount(self.mask.ravel(), minlength=len(names))
        return {
            "task": "seg",
            "mask": {"height": self.mask.shape[0], "width": self.mask.shape[1], "coordinates": "centre crop"},
            "classes": [
                {"index": c, "label": names[c] if c < len(names) else str(c), "pixels": int(n)}
                for c, n in enumerate(counts)
            ],
        }


def check_images(images) -> None:
    """A DataError for an empty list of images: predicting needs at least one."""
    if len(images) == 0:
        raise DataError("got no images; pass at least one image path, PIL image or uint8 (H, W, 3) array")


class RuntimeModel:
    """An artifact on a backend. Use as a context manager, or call `close()`."""

    def __init__(self, artifact: Artifact, backend: Backend) -> None:
        self.artifact = artifact
        self.backend = backend

    @property
    def task(self) -> str:
        return self.artifact.task

    @property
    def labels(self) -> list[str]:
        return self.artifact.labels

    def crop(self, image) -> np.ndarray:
        """The eval resize + centre crop: uint8 (S, S, 3) (decoding as in `sladkit.data.images`)."""
        return resize_crop_eval(self.artifact.transforms, image)

    def preprocess(self, images) -> np.ndarray:
        """A batch in the model's input layout: float32 (N, 3, S, S), or uint8 (N, S, S, 3) when baked."""
        check_images(images)
        crops = [self.crop(image) for image in images]
        if self.artifact.in_graph:
            return np.stack(crops)
        return np.stack([normalize_eval(self.artifact.transforms, c) for c in crops])

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits of a preprocessed batch."""
        if np.shape(batch)[:1] == (0,):
            raise DataError(f"empty batch of shape {np.shape(batch)}; a batch needs at least one image")
        return self.backend.infer(batch)

    def predict(self, images, *, top_k: int = 5) -> list[Prediction]:
        PredictConfig(top_k=top_k)  # refuses out-of-range numbers
        logits = self.infer(self.preprocess(images))
        return postprocess(logits, self.task, self.labels, top_k=top_k)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> RuntimeModel:
        self.backend.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def postprocess(logits: np.ndarray, task: str, labels: list[str], *, top_k: int = 5) -> list[Prediction]:
    if task == "seg":
        return [
            Prediction(mask=m.astype(np.uint8 if len(labels) < 256 else np.int32))
            for m in logits.argmax(axis=1)
        ]
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    k = min(top_k, probs.shape[1])
    order = np.argsort(-probs, axis=1)[:, :k]
    return [
        Prediction(
            labels=[labels[i] for i in row], indices=[int(i) for i in row], scores=[float(p[i]) for i in row]
        )
        for row, p in zip(order, probs, strict=True)
    ]


def load(
    path: str | Path, *, backend: str | None = None, model: str | None = None, threads: int | None = None
) -> RuntimeModel:
    """Load a bundle folder, an .onnx file, an engine (with engine.json) or a run folder for inference.

    Args:
        path: the artifact.
        backend: onnxruntime, tensorrt or torch (default: the first that runs this kind of artifact).
        model: for a bundle, which of its files (default model.onnx; e.g. model.int8-cpu.onnx, model.fp16.engine).
        threads: CPU threads for the backend.
    """
    artifact = resolve(path, model=model)
    return RuntimeModel(artifact, create_backend(artifact, backend, threads=threads).load())
