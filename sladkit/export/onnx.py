"""Step 2 of export: ONNX (fixed image size, dynamic batch), checks, metadata, baked preprocessing.

The model is exported with input `images` (float32 NCHW, normalised) and output `logits` (N x classes, or
N x classes x H x W for segmentation). The position embeddings were resized when the model was built
(timm resamples them once), since DINOv2's bicubic interpolation does not export with a dynamic size.
`bake_preprocess` prepends uint8 NHWC RGB -> normalised NCHW to any exported graph, so an app can feed
camera frames (already resized to the model's size) directly.
"""

from __future__ import annotations

import hashlib
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


def export_onnx(
    model: torch.nn.Module, path: str | Path, *, image_size: int, opset: int, exporter: str = "torchscript"
) -> None:
    """Export `model` to ONNX with a dynamic batch dimension, weights named after their parameters.

    Args:
        exporter: "torchscript" (what `sladkit export` uses) or "dynamo" (`torch.export`; opset >= 18).
    """
    model = model.eval()
    example = torch.zeros(2, 3, image_size, image_size)
    if exporter == "dynamo":
        options = dict(dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False)
    elif exporter == "torchscript":
        options = dict(
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, do_constant_folding=True, dynamo=False
        )
    else:
        raise ValueError(f"exporter must be 'torchscript' or 'dynamo', not {exporter!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT],
            output_names=[OUTPUT],
            opset_version=opset,
            **options,
        )
    name_weights(path, model)


#: Ops whose input 1 is a weight (the ones INT8 quantizes).
WEIGHT_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


def _value_key(array: np.ndarray) -> tuple:
    return array.dtype.str, array.shape, hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


def name_weights(path: str | Path, model: torch.nn.Module) -> dict[str, str]:
    """Rename the anonymous weight initializers of an exported graph after the parameters they hold.

    Both exporters fold `nn.Linear`'s transpose into a new constant (`onnx::MatMul_633` from TorchScript,
    `val_13` from dynamo), and onnxsim then renames the nodes (`Gemm_5`), so nothing in a simplified graph
    says which layer a MatMul is. The values still equal the parameter (or its transpose) bit for bit: each
    weight input of a MatMul/Gemm/Conv is renamed to the unique parameter with that value
    (`backbone.blocks.0.attn.qkv.weight.T` for a transposed copy). Initializer names survive simplification
    and quantization (`..._quantized`), which is what `sladkit.onnx_blocks` maps nodes to blocks through.

    Returns:
        old name -> new name, for the initializers renamed.
    """
    candidates: dict[tuple, list[str]] = {}
    for name, tensor in model.state_dict().items():
        array = tensor.detach().cpu().numpy()
        candidates.setdefault(_value_key(array), []).append(name)
        if array.ndim == 2:
            candidates.setdefault(_value_key(array.T), []).append(name + ".T")
    onnx_model = onnx.load(str(path))
    graph = onnx_model.graph
    weight_inputs = {n.input[1] for n in graph.node if n.op_type in WEIGHT_OPS and len(n.input) > 1}
    taken = {i.name for i in graph.initializer}
    renames: dict[str, str] = {}
    for init in graph.initializer:
        if init.name not in weight_inputs or init.name in model.state_dict():
            continue
        names = candidates.get(_value_key(numpy_helper.to_array(init)), [])
        if len(names) == 1 and names[0] not in taken:  # equal-valued parameters: leave it anonymous
            renames[init.name] = names[0]
            taken.add(names[0])
    if not renames:
        return renames
    for init in graph.initializer:
        init.name = renames.get(init.name, init.name)
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
    for value in [*graph.input, *graph.value_info]:
        value.name = renames.get(value.name, value.name)
    onnx.save(onnx_model, str(path))
    return renames


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
    """Prepend uint8 (N, H, W, 3) RGB -> (x * float32(1/255) - mean) / std in NCHW to the graph in `path`.

    The same float32 operations in the same order as torchvision's `ToDtype(scale=True)` and `Normalize` and
    the runtime's `normalize_eval`, so that ONNX Runtime gives the baked model bit for bit the input the
    unbaked one gets (a fused x * scale + bias differs in the last bit, and that moved 5 of the demo's 500
    predictions of a dynamically quantized model between export's gate and `eval`).
    """
    model = onnx.load(str(path))
    graph = model.graph
    old = next(i for i in graph.input if i.name == INPUT)
    dims = [d.dim_param or d.dim_value for d in old.type.tensor_type.shape.dim]  # [N, 3, H, W]
    raw = "images_uint8_nhwc"
    for node in graph.node:  # the graph's consumers now read the normalised tensor
        node.input[:] = [raw + "_normalised" if name == INPUT else name for name in node.input]
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.asarray(1 / 255, dtype=np.float32), "preprocess_scale"),
            numpy_helper.from_array(
                np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1), "preprocess_mean"
            ),
            numpy_helper.from_array(np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1), "preprocess_std"),
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
            "Sub", [raw + "_scaled", "preprocess_mean"], [raw + "_centred"], name="preprocess/Sub"
        ),
        helper.make_node(
            "Div", [raw + "_centred", "preprocess_std"], [raw + "_normalised"], name="preprocess/Div"
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
