"""sladkit._progress: a bar in a terminal, the bare loop elsewhere; calibration and the INT8 gate use it."""

from __future__ import annotations

import sys

import numpy as np

from sladkit._progress import progress


class Terminal:
    def __init__(self, stream):
        self.stream = stream

    def isatty(self):
        return True

    def write(self, text):
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


def test_a_bar_in_a_terminal_the_bare_loop_elsewhere(monkeypatch):
    items = [1, 2, 3]
    assert progress(items, desc="x") is items  # pytest's stderr is not a terminal
    monkeypatch.setattr(sys, "stderr", Terminal(sys.stderr))
    bar = progress(items, desc="calibration", total=3)
    assert type(bar).__name__ == "tqdm" and list(bar) == items


def test_calibration_walks_its_batches_through_progress(monkeypatch, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from sladkit.export import calibrate

    seen = []

    def spy(iterable, *, desc, total=None):
        seen.append((desc, total))
        return iterable

    monkeypatch.setattr(calibrate, "progress", spy)
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 4, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, 4, 4])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["images"], ["logits"])], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    calibrate.collect_histograms(tmp_path / "m.onnx", np.ones((40, 3, 4, 4), np.float32), batch=16)
    assert seen == [("calibration 1/2 (ranges)", 3), ("calibration 2/2 (histograms)", 3)]
