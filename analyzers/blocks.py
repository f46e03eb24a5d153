"""Repeated blocks (decoder layers, encoder blocks): candidates for depth pruning.

A container (``nn.ModuleList`` or ``nn.Sequential``) holding two or more
children of one class with the same parameter shapes is a stack of repeated
blocks. A block is *residual* if its output is its input plus something
(reached through additions and type casts only), and *removable* if, besides
that stream, nothing it computes is used after it (T5's first layer, for one,
computes the position bias every later layer reads).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import torch
from torch import fx, nn

from .capture import Capture
from .groups import Block

__all__ = ["find_blocks", "repeated_stacks"]

_PASS_THROUGH = {
    "aten.add.Tensor",
    "aten.to.dtype",
    "aten.to.dtype_layout",
    "aten._to_copy.default",
    "aten.alias.default",
    "aten.clone.default",
    "aten.contiguous.default",
    "aten.dropout.default",
    "aten.view.default",  # OPT flattens tokens around its MLP
    "aten.reshape.default",
    "aten._unsafe_view.default",
}


def find_blocks(model: nn.Module, capture: Capture) -> list[Block]:
    stacks = list(_repeated_children(model))
    if not stacks:
        return []
    by_block = _nodes_by_block(capture, {name for _, names in stacks for name, _ in names})
    weights = set(capture.params) | set(capture.buffers)
    paired = _lockstep(model, stacks, capture)
    blocks = []
    for container, names in stacks:
        for name, position in names:
            block = _describe(container, position, name, by_block.get(name, []), weights)
            if block.removable and container in paired:
                block = replace(
                    block,
                    removable=False,
                    reason=f"run in lockstep with '{paired[container]}' (zip of two lists): "
                    "removing it would drop its partner too",
                )
            blocks.append(block)
    return blocks


def _lockstep(model: nn.Module, stacks, capture: Capture) -> dict[str, str]:
    """Stacks whose blocks run alternately with another list's children, one for
    one (PVT and PoolFormer zip their patch embeddings with their stages):
    ``{container: partner}``."""
    lists = {
        path: [f"{path}.{name}" if path else name for name in module._modules]
        for path, module in model.named_modules()
        if isinstance(module, (nn.ModuleList, nn.Sequential)) and len(module) >= 2
    }
    stacked = {container for container, _ in stacks}
    by_child = _nodes_by_block(capture, {name for names in lists.values() for name in names})
    order = {node: i for i, node in enumerate(capture.graph.nodes)}
    starts = {}
    for path, names in lists.items():
        firsts = [min((order[n] for n in by_child.get(name, [])), default=None) for name in names]
        if None not in firsts:
            starts[path] = firsts
    paired = {}
    for a in stacked & set(starts):
        for b, first_b in starts.items():
            first_a = starts[a]
            if a == b or len(first_a) != len(first_b):
                continue
            ahead = all(x < y for x, y in zip(first_a, first_b, strict=True))
            behind = all(y < x for x, y in zip(first_a[1:], first_b, strict=False))
            if ahead or all(y < x for x, y in zip(first_a, first_b, strict=True)):
                interleaved = (
                    behind
                    if ahead
                    else all(x < y for x, y in zip(first_a, first_b[1:], strict=False))
                )
                if interleaved:  # a0 < b0 < a1 < b1 < ... (or b first)
                    paired[a] = b
    return paired


def repeated_stacks(model: nn.Module) -> dict[str, list[str]]:
    """``{container: [block names in order]}``: the stacks of repeated blocks,
    found from the module tree alone (no capture), by the rule
    :func:`find_blocks` uses."""
    return {path: [name for name, _ in members] for path, members in _repeated_children(model)}


def _repeated_children(model: nn.Module) -> list[tuple[str, list[tuple[str, int]]]]:
    """Stacks of blocks. A single layer (a ``Conv2d`` of a VGG's ``features``) is
    not a block, and a plain container holding a stack of its own (a ConvNeXt
    stage) is not one either: its members are."""
    stacks = []
    for path, module in model.named_modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)) or len(module) < 2:
            continue
        # None entries (a layer some positions skip) are no blocks, but count in positions
        positions = {name: position for position, name in enumerate(module._modules)}
        children = list(module.named_children())
        if len(children) < 2:
            continue
        signature, count = Counter(_signature(c) for _, c in children).most_common(1)[0]
        repeated = [(name, c) for name, c in children if _signature(c) == signature]
        first = repeated[0][1]
        if count >= 2 and any(True for _ in first.parameters()) and any(first.children()):
            prefix = f"{path}." if path else ""
            members = [
                (f"{prefix}{name}", positions[name])
                for name, child in children
                if _signature(child) == signature
            ]
            stacks.append((path, members, type(first) in (nn.Sequential, nn.ModuleList)))
    holders = {path for path, _, _ in stacks}
    return [
        (path, members)
        for path, members, plain in stacks
        if not (plain and any(name in holders for name, _ in members))
    ]


def _signature(module: nn.Module) -> str:
    # The class alone: widths may differ (a non-uniformly pruned model) and the
    # first block may own extra parameters (T5's relative attention bias).
    return type(module).__qualname__


def _nodes_by_block(capture: Capture, names: set[str]) -> dict[str, list[fx.Node]]:
    found: dict[str, list[fx.Node]] = {}
    for node in capture.graph.nodes:
        if node.op != "call_function":
            continue
        path = capture.module_of(node)
        while path and path not in names:
            path = path.rpartition(".")[0]
        if path:
            found.setdefault(path, []).append(node)
    return found


def _describe(
    container: str, index: int, name: str, nodes: list[fx.Node], weights: set[str]
) -> Block:
    inside = set(nodes)
    inputs = {
        arg
        for node in nodes
        for arg in node.all_input_nodes
        if arg not in inside and arg.name not in weights
    }
    outputs = [n for n in nodes if any(user not in inside for user in n.users)]
    tensor_outputs = [n for n in outputs if isinstance(n.meta.get("val"), torch.Tensor)]
    for out in tensor_outputs:
        entry = _residual_source(out, inputs, inside)
        if entry is not None:
            others = [n.name for n in tensor_outputs if n is not out]
            reason = f"outputs {others} are used after the block" if others else ""
            return Block(name, container, index, True, not others, entry.name, out.name, reason)
    return Block(
        name, container, index, False, False, reason="no residual path from input to output"
    )


def _residual_source(out: fx.Node, inputs: set[fx.Node], inside: set[fx.Node]) -> fx.Node | None:
    """Follow additions, casts and reshapes from ``out`` back to a block input of
    the same shape."""
    shape = out.meta["val"].shape
    stack, seen = [out], set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node in inputs and getattr(node.meta.get("val"), "shape", None) == shape:
            return node
        if node in inside and str(node.target) in _PASS_THROUGH:
            stack.extend(a for a in node.args if isinstance(a, fx.Node))
    return None
