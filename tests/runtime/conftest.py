"""Fakes for the runtime's tests: a model whose backend needs no file and answers from the image's pixels.

The fake's input is the baked layout (uint8 (N, S, S, 3)); the class it predicts is the red value of the
crop's centre pixel divided by 30 (classification), or each pixel's red value divided by 30 (segmentation),
so a test decides the predictions by the colours it paints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sladkit.data.transforms import transform_config
from sladkit.runtime.artifacts import Artifact
from sladkit.runtime.backends.base import Backend
from sladkit.runtime.model import RuntimeModel

STEP = 30  # red value per class


class FakeClock:
    """A monotonic clock that only moves when told to (`advance`), for timings without flakiness."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeBackend(Backend):
    name = "fake"
    artifact_kinds = ("onnx",)

    def __init__(self, artifact: Artifact, *, on_infer=None) -> None:
        super().__init__(artifact)
        self.on_infer = on_infer  # called with the batch before answering (tests advance clocks here)
        self.calls = 0

    def _load(self) -> None:
        pass

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.on_infer is not None:
            self.on_infer(batch)
        classes = len(self.artifact.labels)
        red = batch[..., 0].astype(np.int64) // STEP  # (N, S, S)
        if self.artifact.task == "cls":
            s = batch.shape[1]
            chosen = red[:, s // 2, s // 2] % classes
            logits = np.zeros((len(batch), classes), dtype=np.float32)
            logits[:, :] = -np.arange(classes, dtype=np.float32)  # runner-up order: class 0, 1, 2, ...
            logits[np.arange(len(batch)), chosen] = 10.0
            return logits
        chosen = red % classes
        logits = np.zeros((len(batch), classes, *red.shape[1:]), dtype=np.float32)
        np.put_along_axis(logits, chosen[:, None], 10.0, axis=1)
        return logits


def fake_artifact(task: str = "cls", classes: int = 7, size: int = 8, crop_pct: float = 1.0) -> Artifact:
    transforms = transform_config(
        image_size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="nearest", crop_pct=crop_pct
    )
    return Artifact(
        kind="onnx",
        path=Path("fake.onnx"),
        model_file=Path("fake.onnx"),
        task=task,
        labels=[f"class{i}" for i in range(classes)],
        transforms=transforms,
        in_graph=True,
        precision="fp32",
    )


@pytest.fixture
def fake_model():
    """`fake_model(task=..., classes=..., size=..., on_infer=...)`: a loaded RuntimeModel on FakeBackend."""

    def make(*, task: str = "cls", classes: int = 7, size: int = 8, crop_pct: float = 1.0, on_infer=None):
        artifact = fake_artifact(task, classes, size, crop_pct)
        return RuntimeModel(artifact, FakeBackend(artifact, on_infer=on_infer).load())

    return make


@pytest.fixture
def fake_clock():
    """A FakeClock: pass it as `clock=` and advance it from a fake backend's `on_infer`."""
    return FakeClock()
