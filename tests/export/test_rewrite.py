"""sladkit.export.rewrite.split_qkv: the tiny ViT's qkv layers split into q, k and v layers, exactly, in the
raw export (MatMul + Add) and the simplified one (Gemm), with the names the attention reads kept."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from sladkit.export.onnx import onnxruntime_session, run_onnx
from sladkit.export.rewrite import split_qkv
from sladkit.onnx_blocks import NodeBlock, node_blocks

DEPTH = 2


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """The tiny student (depth 2) as export quantizes it (simplified, initializers unshared), with timm's zero
    qkv biases (onnxsim leaves MatMul nodes) and with random ones (Gemm nodes)."""
    import torch

    from sladkit.export.onnx import export_onnx
    from sladkit.export.quantize import unshare_initializers
    from sladkit.export.simplify import simplify_onnx
    from sladkit.models.backbones import sladkit_vit_96_p8
    from sladkit.models.heads import TaskModel, create_head

    folder = tmp_path_factory.mktemp("rewrite")
    paths = {}
    for form in ("zero-bias", "bias"):
        torch.manual_seed(0)
        backbone = sladkit_vit_96_p8(depth=DEPTH, init_values=1.0)
        if form == "bias":
            with torch.no_grad():
                for block in backbone.blocks:
                    block.attn.qkv.bias.normal_()
        head = create_head("cls", 96, 15, num_prefix=1, grid=(4, 4), pool="cls+avg")
        export_onnx(TaskModel(backbone, head).eval(), folder / "raw.onnx", image_size=32, opset=17)
        simplify_onnx(folder / "raw.onnx", folder / "simple.onnx")
        unshare_initializers(folder / "simple.onnx", folder / f"{form}.onnx")
        paths[form] = folder / f"{form}.onnx"
    return paths


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("form", ["zero-bias", "bias"])
def test_split_qkv_is_exact_and_keeps_the_attention_inputs(graphs, form, tmp_path):
    path, out = graphs[form], tmp_path / "split.onnx"
    renamed = split_qkv(path, out)
    before, after = onnx.load(str(path)), onnx.load(str(out))
    qkv = [n for n in before.graph.node if len(n.input) > 1 and ".attn.qkv.weight" in n.input[1]]
    assert len(qkv) == DEPTH and set(renamed) >= {n.name for n in qkv}  # and a bias Add where there is one
    assert all(len(new) == 3 for new in renamed.values())
    assert not [
        n
        for n in after.graph.node
        if n.op_type == "Transpose" and list(n.attribute[0].ints) == [2, 0, 3, 1, 4]
    ]
    fcs = ("MatMul", "Gemm")
    assert "Split" not in _ops(after)
    assert sum(map(_ops(after).count, fcs)) == sum(map(_ops(before).count, fcs)) + 2 * DEPTH

    # every tensor an attention MatMul (no weight) reads is still there, under its name
    inits = {i.name for i in before.graph.initializer}
    attention_inputs = {
        i for n in before.graph.node if n.op_type == "MatMul" and n.input[1] not in inits for i in n.input
    }
    assert len(attention_inputs) == 4 * DEPTH
    assert attention_inputs <= {o for n in after.graph.node for o in n.output}

    images = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    reference = run_onnx(onnxruntime_session(path), images)
    got = run_onnx(onnxruntime_session(out), images)
    assert np.abs(got - reference).max() <= 1e-5 * np.abs(reference).max()

    # the new layers read weights named after the qkv parameter: node_blocks maps them to their block
    where = node_blocks(after)
    new_fcs = [name for n in qkv for name in renamed[n.name]]
    assert [where[n] for n in new_fcs] == [
        NodeBlock(f"blocks.{b}", "qkv") for b in range(DEPTH) for _ in "qkv"
    ]


def test_split_qkv_leaves_a_graph_without_the_pattern_alone(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor("w", TensorProto.FLOAT, [2, 6], np.arange(12.0).tolist())],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    assert split_qkv(tmp_path / "m.onnx", tmp_path / "out.onnx") == {}
    assert onnx.load(str(tmp_path / "out.onnx")).graph == graph


def test_split_qkv_takes_matmul_with_a_bias_add_on_either_side(tmp_path):
    """MatMul + Add(bias, x), as torch writes it before simplification, with a constant head-split shape."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight, bias = rng.standard_normal((6, 18)).astype(np.float32), rng.standard_normal(18).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"], name="qkv/MatMul"),
        helper.make_node("Add", ["b", "xw"], ["qkv"], name="qkv/Add"),
        helper.make_node("Reshape", ["qkv", "shape"], ["heads"], name="Reshape"),
        helper.make_node("Transpose", ["heads"], ["t"], name="Transpose", perm=[2, 0, 3, 1, 4]),
        helper.make_node("Split", ["t", "sizes"], ["s0", "s1", "s2"], name="Split", axis=0),
        *[helper.make_node("Squeeze", [f"s{i}", "axis0"], ["qkv"[i]], name=f"Squeeze{i}") for i in range(3)],
    ]
    inits = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(bias, "b"),
        numpy_helper.from_array(np.array([1, 4, 3, 2, 3], np.int64), "shape"),
        numpy_helper.from_array(np.array([1, 1, 1], np.int64), "sizes"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
    ]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 4, 3]) for n in "qkv"]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6])], outputs, inits
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    renamed = split_qkv(tmp_path / "m.onnx", tmp_path / "out.onnx")
    assert set(renamed) == {"qkv/MatMul", "qkv/Add"} and all(len(v) == 3 for v in renamed.values())
    x = {"x": rng.standard_normal((1, 4, 6)).astype(np.float32)}
    expected = onnxruntime_session(tmp_path / "m.onnx").run(None, x)
    got = onnxruntime_session(tmp_path / "out.onnx").run(None, x)
    for e, g in zip(expected, got, strict=True):
        assert np.abs(e - g).max() <= 1e-5
