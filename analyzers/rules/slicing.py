"""Ops that cut an axis into segments or join segments into one: slices,
splits, chunks, cat and stack. Fused projections (qkv, gate_up) and RoPE's
rotate-half are seen through these."""

from __future__ import annotations

import sys
from itertools import accumulate

from torch import ops

from ..axes import AxisConflict, FactKind
from .context import RuleContext, is_run_time
from .registry import register

aten = ops.aten


def _segments(ctx: RuleContext, source, dim: int, sizes: list[int]) -> list[int]:
    """Cut axis ``dim`` of ``source`` into consecutive segments of ``sizes``.
    Empty segments (``split([n, 0])``: a zero-width part of a config) get an
    empty axis each, so every output of the op has one."""
    atom = ctx.axes(source)[dim]
    filled = [size for size in sizes if size]
    pieces = iter(ctx.algebra.cut(atom, list(accumulate(filled))[:-1]) if filled else ())
    return [next(pieces) if size else ctx.algebra.new(0) for size in sizes]


def _split_outputs(ctx: RuleContext, source, dim: int, sizes: list[int]):
    axes = ctx.axes(source)
    dim %= len(axes)
    pieces = _segments(ctx, source, dim, sizes)
    return [(*axes[:dim], piece, *axes[dim + 1 :]) for piece in pieces]


@register(aten.slice.Tensor)
def slice_(ctx: RuleContext):
    source = ctx.node.args[0]
    axes = ctx.axes(source)
    dim = ctx.arg(1, "dim", 0) % len(axes)
    size = ctx.shape(source)[dim]
    start, end, step = ctx.arg(2, "start"), ctx.arg(3, "end"), ctx.arg(4, "step", 1)
    start = 0 if start is None else start
    end = sys.maxsize if end is None else end
    start, end, _ = slice(start, end).indices(size)
    end = max(start, end)
    if end == start:
        out = list(axes)
        out[dim] = ctx.algebra.new(0)
        return tuple(out)
    if step != 1 and end - start > 1:
        phase = _interleaved(ctx, axes[dim], size, start, end, step)
        if phase is not None:
            out = list(axes)
            out[dim] = phase
            return tuple(out)
        out = list(axes)
        out[dim] = ctx.fresh([ctx.out_shape()[dim]])[0]
        ctx.freeze(axes[dim], f"strided slice (step {step}) interleaves indices")
        return tuple(out)
    if start == 0 and end == size:
        return axes
    try:
        pieces = _split_outputs(ctx, source, dim, [start, end - start, size - end])
    except AxisConflict as conflict:  # across an axis regrouped (frozen) before:
        out = list(axes)  # only the sliced axis is frozen, not the heads beside it
        out[dim] = ctx.fresh([end - start])[0]
        for atom in (axes[dim], out[dim]):
            ctx.freeze(atom, f"axes do not line up ({conflict})")
        return tuple(out)
    return pieces[1]  # one piece per size, empty ones included: the middle is the slice


def _interleaved(ctx: RuleContext, atom: int, size: int, start: int, end: int, step: int):
    """``x[..., start::step]`` over the whole axis picks one phase of an
    interleaved layout (gpt-oss's gate/up columns, DeepSeek's rotary pairs): the
    axis is ``(size // step) x step`` and the output is its outer factor. The
    inner factor is a phase, never a unit; it is kept whole. None when the
    slice does not cover the axis that way (the caller freezes it instead)."""
    if end != size or start >= step or size % step:
        return None
    outer, phase = ctx.algebra.new(size // step), ctx.algebra.new(step)
    try:
        ctx.algebra.unify_products([atom], [outer, phase])
    except AxisConflict:
        return None
    where = f"{ctx.describe()}: strided slice (step {step}) picks one of {step} interleaved phases"
    ctx.fact(phase, FactKind.POSITION, where)
    return outer


@register(aten.narrow.default)
def narrow(ctx: RuleContext):
    source, dim, start, length = ctx.node.args[:4]
    size = ctx.shape(source)[dim]
    pieces = _split_outputs(ctx, source, dim, [start, length, size - start - length])
    return pieces[1]  # one piece per size, empty ones included: the middle is the slice


@register(aten.select.int)
def select(ctx: RuleContext):
    """Picking one index: that index becomes a segment of its own, and the axis goes."""
    source, dim, index = ctx.node.args[:3]
    axes = ctx.axes(source)
    dim %= len(axes)
    size = ctx.shape(source)[dim]
    index %= size
    _segments(ctx, source, dim, [index, 1, size - index - 1])
    return axes[:dim] + axes[dim + 1 :]


@register(aten.split_with_sizes.default)
def split_with_sizes(ctx: RuleContext):
    """Sizes written out: a cut that changes them is caught when ``apply``
    re-captures the model, unless they are read from an attribute it updates."""
    source = ctx.node.args[0]
    dim = ctx.arg(2, "dim", 0)
    sizes = [shape[dim] for shape in ctx.out_shapes()]
    if any(is_run_time(size) for size in sizes):
        # tokens split per expert by counts known at run time: that axis stays
        # whole, the others pass through each piece
        axes = ctx.axes(source)
        dim %= len(axes)
        ctx.freeze(axes[dim], "split by sizes known only at run time")
        return [(*axes[:dim], ctx.algebra.new(size), *axes[dim + 1 :]) for size in sizes]
    return _split_outputs(ctx, source, dim, sizes)


@register(
    aten.split.Tensor, aten.unsafe_split.Tensor, aten.chunk.default, aten.unsafe_chunk.default
)
def even_split(ctx: RuleContext):
    """``chunk(n)`` / ``split(size)``: boundaries are recomputed from the total
    at run time, so the pieces must lose the same units (see ``even_split``)."""
    source = ctx.node.args[0]
    dim = ctx.arg(2, "dim", 0)
    sizes = [shape[dim] for shape in ctx.out_shapes()]
    outputs = _split_outputs(ctx, source, dim, sizes)
    ctx.even_split([piece[dim % len(piece)] for piece in outputs])
    return outputs


@register(aten.unbind.int)
def unbind(ctx: RuleContext):
    source = ctx.node.args[0]
    dim = ctx.arg(1, "dim", 0) % len(ctx.axes(source))
    n = ctx.shape(source)[dim]
    return [piece[:dim] + piece[dim + 1 :] for piece in _split_outputs(ctx, source, dim, [1] * n)]


@register(aten.cat.default, aten.concat.default, aten.concatenate.default)
def cat(ctx: RuleContext):
    """The output axis along ``dim`` is the concatenation of the inputs' axes."""
    out = ctx.out_shape()
    dim = ctx.arg(1, "dim", 0) % len(out)
    ranked = [
        t for t in ctx.node.args[0] if ctx.axes(t) is not None and len(ctx.shape(t)) == len(out)
    ]
    # an empty piece adds nothing along ``dim`` but its other axes still match
    # (MobileBERT's head concatenates a (0, vocab) weight when hidden == embedding)
    tensors = [t for t in ranked if ctx.shape(t)[dim] > 0]
    first = ctx.axes(tensors[0])
    for other in ranked:
        axes = ctx.axes(other)
        if axes is not first:
            ctx.unify_all(first[:dim] + first[dim + 1 :], axes[:dim] + axes[dim + 1 :])
    joined = ctx.algebra.concat([ctx.axes(t)[dim] for t in tensors])
    return (*first[:dim], joined, *first[dim + 1 :])


@register(aten.stack.default)
def stack(ctx: RuleContext):
    tensors = list(ctx.node.args[0])
    first = ctx.axes(tensors[0])
    for other in tensors[1:]:
        ctx.unify_all(first, ctx.axes(other))
    dim = ctx.arg(1, "dim", 0) % (len(first) + 1)
    new = ctx.algebra.new(len(tensors))
    ctx.freeze(new, f"stacks {len(tensors)} separate tensors: how many is fixed by the code")
    return (*first[:dim], new, *first[dim:])


@register(aten.constant_pad_nd.default, aten.pad.default)
def pad(ctx: RuleContext):
    """Padding appends new segments around an axis: the original part keeps its units."""
    source = ctx.node.args[0]
    axes = list(ctx.axes(source))
    amounts = list(ctx.node.args[1])
    out_shape = ctx.out_shape()
    for i in range(len(amounts) // 2):
        dim = len(axes) - 1 - i
        before, after = amounts[2 * i], amounts[2 * i + 1]
        if before == 0 and after == 0:
            continue
        if before < 0 or after < 0:
            ctx.freeze(axes[dim], "negative padding crops by position")
            axes[dim] = ctx.algebra.new(out_shape[dim])
            continue
        parts = [ctx.algebra.new(before), axes[dim], ctx.algebra.new(after)]
        axes[dim] = ctx.algebra.concat(parts)
    return tuple(axes)
