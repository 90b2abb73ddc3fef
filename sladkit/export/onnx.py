"""Step 2 of export: ONNX (fixed image size, dynamic batch), checks, metadata, baked preprocessing.

The model is exported with input `images` (float32 NCHW, normalised) and output `logits` (N x classes, or
N x classes x H x W for segmentation). The position embeddings were resized when the model was built
(timm resamples them once), since DINOv2's bicubic interpolation does not export with a dynamic size.
`bake_preprocess` prepends uint8 NHWC RGB -> normalised NCHW to any exported graph, so an app can feed
camera frames (already resized to the model's size) directly.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from sladkit.errors import SladkitError

INPUT = "images"
OUTPUT = "logits"


class ExportError(SladkitError):
    """An export step failed its check."""


def export_onnx(model: torch.nn.Module, path: str | Path, *, image_size: int, opset: int) -> None:
    """Export `model` to ONNX with a dynamic batch dimension (TorchScript exporter)."""
    model = model.eval()
    example = torch.zeros(2, 3, image_size, image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def check_onnx(path: str | Path) -> None:
    """`onnx.checker` with full shape inference; raises ExportError on failure."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # onnx raises ValidationError / InferenceError
        raise ExportError(f"{path} fails onnx.checker: {str(e).splitlines()[0]}") from None


def set_metadata(path: str | Path, metadata: dict[str, object]) -> None:
    """Store metadata (JSON-encoded values) in the model's metadata_props."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    onnx.save(model, str(path))


def read_metadata(path: str | Path) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def bake_preprocess(path: str | Path, out_path: str | Path, *, mean, std) -> None:
    """Prepend uint8 (N, H, W, 3) RGB -> (x / 255 - mean) / std in NCHW to the graph in `path`."""
    model = onnx.load(str(path))
    graph = model.graph
    old = next(i for i in graph.input if i.name == INPUT)
    dims = [d.dim_param or d.dim_value for d in old.type.tensor_type.shape.dim]  # [N, 3, H, W]
    raw = "images_uint8_nhwc"
    for node in graph.node:  # the graph's consumers now read the normalised tensor
        node.input[:] = [raw + "_normalised" if name == INPUT else name for name in node.input]
    scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float64))).astype(np.float32).reshape(1, 3, 1, 1)
    bias = (-np.asarray(mean, dtype=np.float64) / np.asarray(std, dtype=np.float64)).astype(np.float32)
    graph.initializer.extend(
        [
            numpy_helper.from_array(scale, "preprocess_scale"),
            numpy_helper.from_array(bias.reshape(1, 3, 1, 1), "preprocess_bias"),
        ]
    )
    nodes = [
        helper.make_node("Cast", [INPUT], [raw + "_float"], to=TensorProto.FLOAT, name="preprocess/Cast"),
        helper.make_node(
            "Transpose", [raw + "_float"], [raw + "_nchw"], perm=[0, 3, 1, 2], name="preprocess/Transpose"
        ),
        helper.make_node(
            "Mul", [raw + "_nchw", "preprocess_scale"], [raw + "_scaled"], name="preprocess/Mul"
        ),
        helper.make_node(
            "Add", [raw + "_scaled", "preprocess_bias"], [raw + "_normalised"], name="preprocess/Add"
        ),
    ]
    for node in reversed(nodes):
        graph.node.insert(0, node)
    graph.input.remove(old)
    graph.input.insert(
        0, helper.make_tensor_value_info(INPUT, TensorProto.UINT8, [dims[0], dims[2], dims[3], 3])
    )
    onnx.save(model, str(out_path))


def onnxruntime_session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Outputs of an ONNX Runtime session on `images`, in batches."""
    outputs = [session.run([OUTPUT], {INPUT: images[i : i + batch]})[0] for i in range(0, len(images), batch)]
    return np.concatenate(outputs)
