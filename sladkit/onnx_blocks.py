"""Which ViT block, and which layer of it, each node of an ONNX graph belongs to.

Node names cannot say it: onnxsim renames nodes (`Gemm_5`) and the dynamo exporter never had scoped names
(`node_MatMul_12`). Weight names can: `sladkit.export.onnx.export_onnx` names every weight initializer
after its parameter (`backbone.blocks.3.attn.qkv.weight.T`), and those names survive simplification and
Q/DQ quantization (`..._quantized`). So:

1. *anchors*: MatMul/Gemm/Conv nodes whose weight (input 1, through DequantizeLinear/Transpose/Cast)
   is an initializer named like a timm ViT parameter: `blocks.N.attn.qkv|attn.proj|mlp.fc1|mlp.fc2`,
   `patch_embed.*` (the stem) or `head.*`;
2. every other node through its neighbourhood: the latest block among its anchor ancestors (`L`) and the
   set of anchors first reached downstream (`F`). Inside a block L is among F (attention matmuls,
   Softmax, GELU, LayerNorm 2, the first residual Add); a residual Add (two activation inputs, one the
   output of an anchor) ends the block of its anchor; a node that feeds one anchor only is that anchor's
   input (LayerNorm 1 of the next block, the final norm and pooling of the head); otherwise L.

Torch-free (onnx only), so the runtime's `profile --layers` can use it on a bundle's models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

STEM = "stem"
HEAD = "head"
OTHER = "other"
WEIGHT_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")
#: ops a weight passes through between its initializer and the MatMul (Q/DQ, layout, type)
_WEIGHT_PATH = ("DequantizeLinear", "QuantizeLinear", "Transpose", "Cast", "Identity")
#: ops that only move or requantize data: looked through when asking what feeds an attention MatMul
_DATA_MOVES = (*_WEIGHT_PATH, "Reshape", "Squeeze", "Unsqueeze", "Flatten")

_BLOCK_WEIGHT = re.compile(r"(?:^|\.)blocks\.(\d+)\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.weight")
_STEM_WEIGHT = re.compile(r"(?:^|\.)patch_embed\.")
_HEAD_WEIGHT = re.compile(r"^head\.")
_ROLES = {"attn.qkv": "qkv", "attn.proj": "proj", "mlp.fc1": "fc1", "mlp.fc2": "fc2"}


@dataclass(frozen=True)
class NodeBlock:
    """Where a node sits in the ViT.

    Attributes:
        block: "blocks.N", "stem" (patch embedding, class token, position embedding), "head" (final norm,
            pooling, task head) or "other" (a graph without named weights).
        role: qkv, proj, fc1, fc2, patch_embed, head (weight layers), attn.qk (q @ k^T), attn.softmax,
            attn.av (softmax @ v), or other.
    """

    block: str
    role: str

    @property
    def index(self) -> int | None:
        """N of blocks.N, else None."""
        return int(self.block.split(".")[1]) if self.block.startswith("blocks.") else None


def block_order(block: str) -> int:
    """Sort key: stem < blocks.0 < blocks.1 < ... < head < other."""
    if block.startswith("blocks."):
        return int(block.split(".")[1])
    return {STEM: -1, HEAD: 1 << 30}.get(block, 1 << 31)


def weight_block(name: str) -> NodeBlock | None:
    """The block and role a weight initializer's name says, or None."""
    match = _BLOCK_WEIGHT.search(name)
    if match:
        return NodeBlock(f"blocks.{match[1]}", _ROLES[match[2]])
    if _STEM_WEIGHT.search(name):
        return NodeBlock(STEM, "patch_embed")
    if _HEAD_WEIGHT.search(name):
        return NodeBlock(HEAD, HEAD)
    return None


def node_key(node, index: int) -> str:
    """A node's name, or `#<index>` for an unnamed node."""
    return node.name or f"#{index}"


def node_blocks(model) -> dict[str, NodeBlock]:
    """Block and role of every node of `model` (an onnx.ModelProto or a path), keyed by node name.

    Unnamed nodes are keyed `#<index in graph order>`. Nodes must be in topological order (as the ONNX
    standard requires of a graph).
    """
    if isinstance(model, (str, Path)):
        import onnx

        model = onnx.load(str(model), load_external_data=False)
    graph = model.graph
    nodes = list(graph.node)
    constants = {i.name for i in graph.initializer}
    producer: dict[str, int] = {}
    for k, node in enumerate(nodes):
        for out in node.output:
            producer[out] = k
    constants |= {n.output[0] for n in nodes if n.op_type == "Constant"}
    consumers: dict[int, list[int]] = {k: [] for k in range(len(nodes))}
    for k, node in enumerate(nodes):
        for name in node.input:
            if name in producer:
                consumers[producer[name]].append(k)

    def source(name: str, through: tuple[str, ...]) -> tuple[str, int | None]:
        """Follow `name` up through `through` ops: (initializer name, None) or (tensor, producing node)."""
        while name not in constants and name in producer:
            node = nodes[producer[name]]
            if node.op_type not in through or not node.input:
                return name, producer[name]
            name = node.input[0]
        return name, None

    def is_constant(name: str) -> bool:
        return source(name, _WEIGHT_PATH)[0] in constants

    anchors: dict[int, NodeBlock] = {}
    for k, node in enumerate(nodes):
        if node.op_type in WEIGHT_OPS and len(node.input) > 1:
            weight, _ = source(node.input[1], _WEIGHT_PATH)
            found = weight_block(weight) if weight in constants else None
            if found:
                anchors[k] = found

    # L: the latest anchor block upstream (graph order is topological).
    latest: list[str | None] = [None] * len(nodes)
    for k, node in enumerate(nodes):
        blocks = [
            anchors[p].block if p in anchors else latest[p]
            for p in (producer.get(name) for name in node.input)
            if p is not None
        ]
        blocks = [b for b in blocks if b is not None]
        latest[k] = max(blocks, key=block_order) if blocks else None
    # F: the anchors first reached downstream.
    first: list[frozenset[int]] = [frozenset()] * len(nodes)
    for k in reversed(range(len(nodes))):
        reached: set[int] = set()
        for c in consumers[k]:
            reached |= {c} if c in anchors else first[c]
        first[k] = frozenset(reached)
    # An anchor's output, possibly through single-input epilogue ops (bias Add, LayerScale Mul, Q/DQ).
    epilogue = [False] * len(nodes)
    for k, node in enumerate(nodes):
        activations = [n for n in node.input if n and not is_constant(n)]
        producers = [producer[n] for n in activations if n in producer]
        epilogue[k] = k in anchors or (len(producers) == 1 and epilogue[producers[0]])

    result: dict[str, NodeBlock] = {}
    for k, node in enumerate(nodes):
        if k in anchors:
            result[node_key(node, k)] = anchors[k]
            continue
        ahead = {anchors[a].block for a in first[k]}
        activations = [n for n in node.input if n and not is_constant(n)]
        if latest[k] is not None and latest[k] in ahead:
            block = latest[k]
        elif len(activations) > 1 and any(epilogue[producer[n]] for n in activations if n in producer):
            block = latest[k]  # a residual Add closes the block whose output it adds
        elif len(first[k]) == 1:
            block = next(iter(ahead))  # the private input of one anchor (a LayerNorm, pooling)
        elif latest[k] is not None:
            block = latest[k]
        else:
            block = min(ahead, key=block_order) if ahead else OTHER
        result[node_key(node, k)] = NodeBlock(block, _role(node, activations, source, nodes))
    return result


def _role(node, activations: list[str], source, nodes) -> str:
    if node.op_type == "Softmax":
        return "attn.softmax"
    if node.op_type == "MatMul" and len(activations) == 2:
        fed_by = {
            nodes[p].op_type for p in (source(name, _DATA_MOVES)[1] for name in activations) if p is not None
        }
        return "attn.av" if "Softmax" in fed_by else "attn.qk"
    return "other"
