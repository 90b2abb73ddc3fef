"""Exact graph rewrites that let a runtime fuse more of a ViT: the openvino CPU INT8 form applies them.

`split_qkv`: timm's attention computes q, k and v with one (D x 3D) linear layer, then splits its output
with a 5-D Transpose (2, 0, 3, 1, 4) and a Split. OpenVINO's CPU plugin fuses an attention whose q, k and v
each come from their own linear layer through a 4-D Transpose (0, 2, 1, 3) (the layout of BERT-style exports)
into its INT8 attention kernel, transposes included; the 5-D Transpose and the Split it runs as separate
copies. So the qkv layer becomes three (D x D) layers, each followed by Reshape and Transpose (0, 2, 1, 3),
and the tensors the attention reads keep their names and values (a calibration made before the rewrite
still fits: every tensor a Q/DQ form quantizes exists in both graphs with the same values).
Measured on a ViT-S/14 at 224 px in OpenVINO (`benchmarks/results/cpu_int8_forms.md`, "Splitting qkv").

The rewrite is exact in real arithmetic (each output column is the same dot product); float results may
differ in the last bits where a kernel sums in another order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: timm's head split: (B, N, 3, H, d) -> (3, B, H, N, d)
_QKV_PERM = [2, 0, 3, 1, 4]
_HEADS_PERM = [0, 2, 1, 3]


def split_qkv(path: str | Path, out_path: str | Path) -> dict[str, list[str]]:
    """Rewrite every qkv linear layer of `path` into q, k and v layers (module docstring); write `out_path`.

    Matches FC -> Reshape (a, n, 3, h, d) -> Transpose (2, 0, 3, 1, 4) -> Split (axis 0, three equal parts)
    -> Squeeze (axis 0), where FC is MatMul(x, W) with an optional Add(bias), or Gemm(x, W, bias) (alpha 1,
    beta 1), W and bias initializers: the TorchScript exporter's graph after onnxsim, which `sladkit export`
    makes. Anything else is left as it is (the dynamo exporter's graph splits with Slice nodes: untouched).

    Returns:
        {name of a qkv node replaced (the MatMul/Gemm, and its bias Add): the names of its q, k and v nodes}
        ({}: the graph has no such pattern, and `out_path` is a copy), so that node lists made on `path`
        (the gate's per-block fallback) can be translated.
    """
    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producer[name] = node
    graph_outputs = {o.name for o in graph.output}

    def only_consumer(name: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in graph_outputs else None

    def constant(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producer.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    removed: set[int] = set()
    inserted: dict[int, list[onnx.NodeProto]] = {}  # id(node replaced) -> the nodes that take its place
    new_inits: list[onnx.TensorProto] = []
    renamed: dict[str, list[str]] = {}
    for reshape in graph.node:
        if reshape.op_type != "Reshape":
            continue
        match = _match_head_split(reshape, only_consumer, constant)
        fc = _match_fc(producer.get(reshape.input[0]), producer, only_consumer, inits)
        if match is None or fc is None or only_consumer(reshape.input[0]) is not reshape:
            continue
        shape, squeezes, chain = match
        weight, bias, fc_nodes, transposed = fc
        columns = weight.shape[0] if transposed else weight.shape[1]
        if columns % 3 or (bias is not None and bias.shape != (columns,)):
            continue
        width = columns // 3
        weight_name = fc_nodes[0].input[1]
        if bias is None:
            bias_name = None
        elif fc_nodes[0].op_type == "Gemm":
            bias_name = fc_nodes[0].input[2]
        else:  # the Add's initializer input
            bias_name = next(i for i in fc_nodes[-1].input if i in inits)
        x = fc_nodes[0].input[0]
        shape_name = f"{reshape.name}/heads_shape"
        new_inits.append(numpy_helper.from_array(np.array([*shape[:2], *shape[3:]], np.int64), shape_name))
        nodes = []
        for i, (letter, squeeze) in enumerate(zip("qkv", squeezes, strict=True)):
            cols = slice(i * width, (i + 1) * width)
            w_i = weight[cols] if transposed else weight[:, cols]
            w_name = f"{weight_name}.{letter}"
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(w_i), w_name))
            b_name = None
            if bias is not None:
                b_name = f"{bias_name}.{letter}"
                new_inits.append(numpy_helper.from_array(np.ascontiguousarray(bias[cols]), b_name))
            prefix = f"{reshape.name}/{letter}"
            out = f"{prefix}/linear"
            if fc_nodes[0].op_type == "Gemm":
                gemm = fc_nodes[0]
                attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
                inputs = [x, w_name] + ([b_name] if b_name else [])
                nodes.append(helper.make_node("Gemm", inputs, [out], name=f"{prefix}/Gemm", **attrs))
            else:
                matmul_out = f"{prefix}/matmul" if b_name else out
                nodes.append(helper.make_node("MatMul", [x, w_name], [matmul_out], name=f"{prefix}/MatMul"))
                if b_name:
                    nodes.append(helper.make_node("Add", [matmul_out, b_name], [out], name=f"{prefix}/Add"))
            nodes.append(
                helper.make_node("Reshape", [out, shape_name], [f"{prefix}/heads"], name=f"{prefix}/Reshape")
            )
            nodes.append(
                helper.make_node(
                    "Transpose",
                    [f"{prefix}/heads"],
                    [squeeze.output[0]],
                    name=f"{prefix}/Transpose",
                    perm=_HEADS_PERM,
                )
            )
        inserted[id(reshape)] = nodes
        for old in fc_nodes:
            renamed[old.name] = [n.name for n in nodes if n.op_type == old.op_type]
        removed.update(id(n) for n in (*fc_nodes, *chain, *squeezes))
    if not renamed:
        onnx.save(model, str(out_path))
        return renamed
    kept = []
    for node in graph.node:
        kept.extend(inserted.get(id(node), []))
        if id(node) not in removed and id(node) not in inserted:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    keep_inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend([*keep_inits, *new_inits])
    produced = {name for node in graph.node for name in node.output}
    value_info = [v for v in graph.value_info if v.name in produced]  # shapes of removed tensors go
    del graph.value_info[:]
    graph.value_info.extend(value_info)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return renamed


def _match_head_split(reshape, only_consumer, constant):
    """(the 5-D shape, the three Squeeze nodes, [reshape, transpose, split]) or None."""
    shape = constant(reshape.input[1]) if len(reshape.input) > 1 else None
    if shape is None or shape.ndim != 1 or len(shape) != 5 or shape[2] != 3 or 0 in shape.tolist():
        return None
    transpose = only_consumer(reshape.output[0])
    if transpose is None or transpose.op_type != "Transpose":
        return None
    perm = [list(a.ints) for a in transpose.attribute if a.name == "perm"]
    if perm != [_QKV_PERM]:
        return None
    split = only_consumer(transpose.output[0])
    if split is None or split.op_type != "Split" or len(split.output) != 3:
        return None
    axis = [a.i for a in split.attribute if a.name == "axis"]
    sizes = constant(split.input[1]) if len(split.input) > 1 and split.input[1] else None
    if axis not in ([0], []) or (sizes is not None and sizes.tolist() != [1, 1, 1]):
        return None
    squeezes = []
    for out in split.output:
        squeeze = only_consumer(out)
        if squeeze is None or squeeze.op_type != "Squeeze":
            return None
        axes = constant(squeeze.input[1]) if len(squeeze.input) > 1 else None
        if axes is None:
            axes = np.array([a.ints for a in squeeze.attribute if a.name == "axes"]).ravel()
        if axes.tolist() != [0]:
            return None
        squeezes.append(squeeze)
    return shape.tolist(), squeezes, [reshape, transpose, split]


def _match_fc(node, producer, only_consumer, inits):
    """(weight, bias or None, the FC's nodes, weight stored transposed) for MatMul(+Add) or Gemm, else None."""

    def init(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(inits[name]) if name in inits else None

    if node is None:
        return None
    if node.op_type == "Gemm":
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
            return None
        weight = init(node.input[1])
        bias = init(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if weight is None or weight.ndim != 2 or (len(node.input) > 2 and node.input[2] and bias is None):
            return None
        return weight, bias, [node], bool(attrs.get("transB", 0))
    bias, add = None, None
    if node.op_type == "Add":
        add = node
        side = 1 if node.input[1] in inits else 0  # torch writes Add(bias, x) or Add(x, bias)
        bias, node = init(node.input[side]), producer.get(node.input[1 - side])
        if bias is None or bias.ndim != 1 or node is None or only_consumer(node.output[0]) is not add:
            return None
    if node.op_type != "MatMul":
        return None
    weight = init(node.input[1])
    if weight is None or weight.ndim != 2:
        return None
    return weight, bias, [node] + ([add] if add is not None else []), False
