"""Ops that re-arrange axes without touching values: reshapes (which reveal
heads), permutations, squeezes and broadcasts."""

from __future__ import annotations

from math import prod

from torch import ops

from ..axes import AxisConflict, FactKind
from .context import RuleContext
from .registry import register

aten = ops.aten


def _reshape(ctx: RuleContext, source, out_shape) -> tuple[int, ...]:
    """Row-major reshape: output axes are products of the input's factors.

    Leading and trailing axes of equal sizes on both sides are the same axes
    (row-major order fixes them), so only the axes between are regrouped; where
    those do not line up (a relative-position shift views (i, j) as (j, i)),
    only they are frozen, not the heads around them."""
    axes = ctx.axes(source)
    out = ctx.fresh(out_shape)
    factors = [leaf for atom in axes for leaf in ctx.algebra.product_leaves(atom)]
    if 0 in out_shape or any(ctx.size(leaf) == 0 for leaf in factors):
        return out  # an empty tensor carries no index space to couple (Falcon-H1)
    shape = ctx.shape(source)
    lead = 0
    while lead < min(len(shape), len(out_shape)) and shape[lead] == out_shape[lead]:
        lead += 1
    trail = 0
    while (
        trail < min(len(shape), len(out_shape)) - lead
        and shape[-1 - trail] == out_shape[-1 - trail]
    ):
        trail += 1
    for x, y in zip(
        (*axes[:lead], *axes[len(axes) - trail :]),
        (*out[:lead], *out[len(out) - trail :]),
        strict=True,
    ):
        ctx.algebra.unify(x, y)
    middle, out_middle = axes[lead : len(axes) - trail], out[lead : len(out) - trail]
    try:
        ctx.algebra.unify_products(
            [leaf for atom in middle for leaf in ctx.algebra.product_leaves(atom)],
            [leaf for atom in out_middle for leaf in ctx.algebra.product_leaves(atom)],
        )
    except AxisConflict as conflict:
        for atom in (*middle, *out_middle):
            if ctx.size(atom) != 1:
                ctx.freeze(atom, f"axes do not line up ({conflict})")
    ctx.value_domain = ctx.domain_of(source)
    return out


@register(
    aten.view.default,
    aten.reshape.default,
    aten._unsafe_view.default,
    aten.view_as.default,
    aten.reshape_as.default,
    aten.flatten.using_ints,
    aten.unflatten.int,
    aten.ravel.default,
)
def reshape(ctx: RuleContext):
    """``view [B, S, -1, 64]`` splits a 384-wide axis into 6 x 64 and so on.

    The output's axes are fresh; unifying the two factor lists splits whichever
    side is coarser, so the split is seen by every axis already joined to it.
    """
    out = _reshape(ctx, ctx.node.args[0], ctx.out_shape())
    _mark_sizes_beside_inferred(ctx, out)
    return out


def _written_sizes(ctx: RuleContext) -> list[int] | None:
    """The output sizes as the code wrote them (with its ``-1``), if it did."""
    target = ctx.node.target
    if target in (aten.view.default, aten.reshape.default, aten._unsafe_view.default):
        return list(ctx.node.args[1])
    if target is aten.unflatten.int:
        shape = ctx.shape(ctx.node.args[0])
        dim = ctx.node.args[1] % len(shape)
        return [*shape[:dim], *ctx.node.args[2], *shape[dim + 1 :]]
    return None


def _mark_sizes_beside_inferred(ctx: RuleContext, out) -> None:
    """``view(b, s, 2, -1)`` splits one axis into a written 2 and an inferred
    rest. Cutting the written axis leaves the 2 in the code (unless an attribute
    it came from is updated, which cannot be told from the graph), and the -1
    silently absorbs the cut: the axis is re-split at the wrong boundary. Axes
    written beside a -1 within the same input axis are marked so plans keep
    them whole."""
    written = _written_sizes(ctx)
    if written is None or -1 not in written:
        return
    in_shape, out_shape = ctx.shape(ctx.node.args[0]), ctx.out_shape()
    if 0 in in_shape or 0 in out_shape:
        return
    inferred = written.index(-1)
    out_bounds = _prefix_products(out_shape)
    common = set(_prefix_products(in_shape)) & set(out_bounds)  # where both sides align
    start = max(b for b in common if b <= out_bounds[inferred])
    end = min(b for b in common if b >= out_bounds[inferred + 1])
    for i, size in enumerate(out_shape):
        beside = start <= out_bounds[i] and out_bounds[i + 1] <= end
        if i != inferred and beside and size > 1:
            ctx.fact(
                out[i],
                FactKind.WRITTEN,
                f"{ctx.describe()}: size {size} is written into the code beside a -1, which "
                "would silently absorb a cut of this axis",
            )


def _prefix_products(shape) -> list[int]:
    bounds = [1]
    for size in shape:
        bounds.append(bounds[-1] * size)
    return bounds


@register(aten.permute.default)
def permute(ctx: RuleContext):
    axes = ctx.axes(ctx.node.args[0])
    return tuple(axes[d] for d in ctx.node.args[1])


@register(aten.transpose.int, aten.swapaxes.default)
def transpose(ctx: RuleContext):
    axes = list(ctx.axes(ctx.node.args[0]))
    a, b = (d % len(axes) for d in ctx.node.args[1:3])
    axes[a], axes[b] = axes[b], axes[a]
    return tuple(axes)


@register(aten.t.default, aten.numpy_T.default)
def t(ctx: RuleContext):
    return tuple(reversed(ctx.axes(ctx.node.args[0])))


@register(aten.movedim.int)
def movedim(ctx: RuleContext):
    axes = list(ctx.axes(ctx.node.args[0]))
    src, dst = (d % len(axes) for d in ctx.node.args[1:3])
    axes.insert(dst, axes.pop(src))
    return tuple(axes)


@register(aten.unsqueeze.default)
def unsqueeze(ctx: RuleContext):
    axes = list(ctx.axes(ctx.node.args[0]))
    dim = ctx.node.args[1] % (len(axes) + 1)
    axes.insert(dim, ctx.algebra.new(1))
    ctx.value_domain = ctx.domain_of(ctx.node.args[0])
    return tuple(axes)


@register(aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default)
def squeeze(ctx: RuleContext):
    axes = ctx.axes(ctx.node.args[0])
    if len(ctx.node.args) > 1:
        dims = ctx.node.args[1]
        dims = {d % len(axes) for d in (dims if isinstance(dims, (list, tuple)) else [dims])}
    else:
        dims = set(range(len(axes)))
    ctx.value_domain = ctx.domain_of(ctx.node.args[0])
    return tuple(a for i, a in enumerate(axes) if not (i in dims and ctx.size(a) == 1))


@register(aten.expand.default, aten.expand_as.default, aten.broadcast_to.default)
def expand(ctx: RuleContext):
    """Axes of size 1 expanded to n become new axes (GQA's ``repeat_kv`` makes
    the queries-per-KV-head axis this way); the others pass through."""
    axes = ctx.axes(ctx.node.args[0])
    out_shape = ctx.out_shape()
    new = len(out_shape) - len(axes)
    out = list(ctx.fresh(out_shape[:new]))
    for atom, size in zip(axes, out_shape[new:], strict=True):
        if ctx.size(atom) == size:
            out.append(atom)
        else:
            fresh = ctx.algebra.new(size)
            ctx.fact(fresh, FactKind.BROADCAST, f"expanded from 1 to {size} by {ctx.describe()}")
            out.append(fresh)
    ctx.value_domain = ctx.domain_of(ctx.node.args[0])  # expanded indices still index it
    return tuple(out)


@register(aten.repeat.default)
def repeat(ctx: RuleContext):
    """Tiling: each output axis is ``repeats x input axis`` (the copy index outermost)."""
    axes = ctx.axes(ctx.node.args[0])
    repeats = list(ctx.node.args[1])
    new = len(repeats) - len(axes)
    out = list(ctx.fresh(repeats[:new]))
    for atom, times in zip(axes, repeats[new:], strict=True):
        copies = ctx.algebra.new(times)
        ctx.fact(copies, FactKind.BROADCAST, f"tiled {times} times by {ctx.describe()}")
        out.append(ctx.algebra.product([copies, atom]))
    return tuple(out)


@register(aten.repeat_interleave.self_int)
def repeat_interleave(ctx: RuleContext):
    """Each index is repeated in place: the output axis is ``input axis x repeats``."""
    axes = list(ctx.axes(ctx.node.args[0]))
    repeats = ctx.arg(1, "repeats")
    dim = ctx.arg(2, "dim")
    if dim is None:
        axes, dim = list(_reshape(ctx, ctx.node.args[0], [prod(ctx.shape(ctx.node.args[0]))])), 0
    copies = ctx.algebra.new(repeats)
    ctx.fact(copies, FactKind.BROADCAST, f"repeated {repeats} times by {ctx.describe()}")
    dim %= len(axes)
    axes[dim] = ctx.algebra.product([axes[dim], copies])
    return tuple(axes)


@register(aten.view_as_complex.default)
def view_as_complex(ctx: RuleContext):
    """``(..., n, 2)`` real pairs read as ``(..., n)`` complex numbers (RoPE in
    complex form, Llama 4): the pair axis becomes the number itself. A view of a
    slice keeps the strides of what it was cut from, which must be even: the
    pieces of that tensor's rows keep even counts (DeepSeek-V2 slices its rotary
    keys from [kv_lora_rank | rope] rows)."""
    source = _sliced_from(ctx.node.args[0])
    axes = ctx.axes(source) if source is not None else None
    if axes:
        for leaf in ctx.algebra.leaves(axes[-1]):
            ctx.fact(leaf, FactKind.ALIGN, f"{ctx.describe()}: even strides", value=2)
    return tuple(ctx.axes(ctx.node.args[0])[:-1])


_VIEWS = {
    aten.view.default,
    aten.reshape.default,
    aten._unsafe_view.default,
    aten.transpose.int,
    aten.permute.default,
    aten.unsqueeze.default,
    aten.squeeze.dim,
    aten.alias.default,
}
_SLICES = {
    aten.split.Tensor,
    aten.split_with_sizes.default,
    aten.chunk.default,
    aten.slice.Tensor,
    aten.narrow.default,
}


def _sliced_from(node):
    """The tensor that ``node``, through views only, is a slice of (or None)."""
    while getattr(node, "op", None) == "call_function":
        if node.target in _VIEWS:
            node = node.args[0]
            continue
        if "getitem" in str(node.target) or _same_dtype(node):
            node = node.args[0]
            continue
        return node.args[0] if node.target in _SLICES else None
    return None


def _same_dtype(node) -> bool:
    """``.to(dtype)`` / ``.float()`` to the dtype it has: the tensor itself."""
    if node.target != aten.to.dtype:
        return False
    before = getattr(node.args[0], "meta", {}).get("val")
    after = node.meta.get("val")
    return before is not None and after is not None and before.dtype == after.dtype


@register(aten.view_as_real.default)
def view_as_real(ctx: RuleContext):
    """``(..., n)`` complex numbers back to ``(..., n, 2)`` real pairs."""
    return (*ctx.axes(ctx.node.args[0]), ctx.algebra.new(2))


@register(aten.as_strided.default)
def as_strided(ctx: RuleContext):
    """A strided view over a tensor's memory (Longformer's overlapping windows).
    An output axis is an input axis where both have one size and stride and,
    on both sides, that axis is a digit of its own in the memory offset (every
    other stride a multiple of its span, or all of them together below its
    stride): the same index reads the same rows. The other axes re-read memory
    (windows over positions) and are frozen."""
    source = ctx.node.args[0]
    size, stride = list(ctx.node.args[1]), list(ctx.node.args[2])
    offset = ctx.arg(3, "storage_offset", 0) or 0
    value = source.meta.get("val")
    axes, out = ctx.axes(source), ctx.fresh(ctx.out_shape())
    why = f"{ctx.describe()}: a strided view re-reads these axes' memory"
    kept_in, kept_out = set(), set()
    if value is not None:
        shape, strides = list(value.shape), list(value.stride())
        for e, (n, step) in enumerate(zip(size, stride, strict=True)):
            if n == 1:
                continue
            for d, (m, in_step) in enumerate(zip(shape, strides, strict=True)):
                if (
                    (m, in_step) == (n, step)
                    and d not in kept_in
                    and _digit(size, stride, e, offset)
                    and _digit(shape, strides, d, value.storage_offset())
                ):
                    ctx.algebra.unify(axes[d], out[e])
                    kept_in.add(d)
                    kept_out.add(e)
                    break
    for atom in [a for d, a in enumerate(axes) if d not in kept_in] + [
        a for e, a in enumerate(out) if e not in kept_out
    ]:
        if ctx.size(atom) != 1:
            ctx.fact(atom, FactKind.FROZEN, why)
    return out


def _digit(sizes, strides, dim: int, offset) -> bool:
    """Whether axis ``dim`` is a digit of its own in the memory offset."""
    span = strides[dim] * sizes[dim]
    below = offset if isinstance(offset, int) and offset < strides[dim] else 0
    if isinstance(offset, int) and offset >= strides[dim] and offset % span:
        return False
    for f, (n, step) in enumerate(zip(sizes, strides, strict=True)):
        if f == dim or n == 1:
            continue
        if step >= strides[dim]:
            if step % span:
                return False
        else:
            below += step * (n - 1)
    return below < strides[dim]
