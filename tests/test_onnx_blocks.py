"""sladkit.onnx_blocks: every Gemm/MatMul/Conv of the tiny model mapped to its block and role, on both
exporters' simplified graphs and on the Q/DQ model, where onnxsim's node names (`Gemm_5`) say nothing."""

from __future__ import annotations

import subprocess
import sys

import onnx
import pytest

from sladkit.onnx_blocks import NodeBlock, node_blocks

DEPTH = 3
BLOCK_ROLES = ["qkv", "attn.qk", "attn.av", "proj", "fc1", "fc2"]  # graph order of a timm block's matmuls
EXPECTED = (
    [NodeBlock("stem", "patch_embed")]
    + [NodeBlock(f"blocks.{b}", role) for b in range(DEPTH) for role in BLOCK_ROLES]
    + [NodeBlock("head", "head")]
)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """The tiny student (depth 3) exported by each exporter, simplified and unshared as export does."""
    import torch

    from sladkit.export.onnx import export_onnx
    from sladkit.export.quantize import unshare_initializers
    from sladkit.export.simplify import simplify_onnx
    from sladkit.models.backbones import sladkit_vit_96_p8
    from sladkit.models.heads import TaskModel, create_head

    torch.manual_seed(0)
    backbone = sladkit_vit_96_p8(depth=DEPTH, init_values=1.0)
    head = create_head("cls", 96, 15, num_prefix=1, grid=(4, 4), pool="cls+avg")
    model = TaskModel(backbone, head).eval()
    folder = tmp_path_factory.mktemp("blocks")
    paths = {}
    for exporter, opset in (("torchscript", 17), ("dynamo", 18)):
        raw, simple = folder / f"{exporter}.raw.onnx", folder / f"{exporter}.simple.onnx"
        export_onnx(model, raw, image_size=32, opset=opset, exporter=exporter)
        simplify_onnx(raw, simple)
        unshare_initializers(simple, folder / f"{exporter}.onnx")
        paths[exporter] = folder / f"{exporter}.onnx"
    return paths


def _matmuls(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type in ("Gemm", "MatMul", "Conv")]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_every_matmul_maps_to_its_block_and_role(graphs, exporter):
    model = onnx.load(str(graphs[exporter]))
    names = _matmuls(model)
    if exporter == "torchscript":  # what made the old name-based mapping blind
        assert sum(n.startswith("Gemm_") for n in names) >= DEPTH
    where = node_blocks(model)
    assert [where[n] for n in names] == EXPECTED
    assert [where[n].index for n in names][1:4] == [0, 0, 0]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_norms_softmax_and_residuals_fall_in_their_block(graphs, exporter):
    model = onnx.load(str(graphs[exporter]))
    where = node_blocks(model)
    by_op: dict[str, list[NodeBlock]] = {}
    for node in model.graph.node:
        by_op.setdefault(node.op_type, []).append(where[node.name])
    blocks = [f"blocks.{b}" for b in range(DEPTH)]
    # norm1, norm2 per block, then the final norm, which only feeds the head
    assert [b.block for b in by_op["LayerNormalization"]] == [b for b in blocks for _ in (0, 1)] + ["head"]
    assert by_op["Softmax"] == [NodeBlock(b, "attn.softmax") for b in blocks]
    # position embedding (stem), then per block: residual 1, GELU's + 1, residual 2
    assert [b.block for b in by_op["Add"]] == ["stem"] + [b for b in blocks for _ in range(3)]


def test_qdq_model_maps_through_dequantize(graphs, tmp_path):
    import numpy as np

    from sladkit.export.quantize import Calibration, quantize_qdq

    images = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    calibration = Calibration.run(graphs["torchscript"], images, "minmax", tmp_path / "ranges.json")
    quantize_qdq(graphs["torchscript"], tmp_path / "int8.onnx", calibration)
    model = onnx.load(str(tmp_path / "int8.onnx"))
    where = node_blocks(model)
    assert [where[n] for n in _matmuls(model)] == EXPECTED
    assert all(
        where[n.name].block == where[next(c for c in model.graph.node if n.output[0] in c.input).name].block
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
    )


def test_graph_without_named_weights_maps_to_other():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"), helper.make_node("Relu", ["y"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1.0, 0.0, 0.0, 1.0])],
    )
    where = node_blocks(helper.make_model(graph))
    assert where == {"mm": NodeBlock("other", "other"), "#1": NodeBlock("other", "other")}


def test_importable_without_torch():
    code = "import sys, sladkit.onnx_blocks; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
