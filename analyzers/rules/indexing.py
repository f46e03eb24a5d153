"""Lookups and data-dependent indexing.

An axis indexed by computed values is frozen, unless the index values are known
to be positions along another axis (their *value domain*, set by top-k, argmax
or sort): then the two axes are one, which is how an MoE router's expert axis
reaches the fused expert weights.
"""

from __future__ import annotations

import torch
from torch import ops

from ..axes import FactKind, Interface
from .context import RuleContext
from .registry import register

aten = ops.aten


def _indexed(ctx: RuleContext, atom: int, index) -> None:
    """``atom`` is addressed by the values of ``index``."""
    domain = ctx.domain_of(index)
    if domain is not None and ctx.size(domain) == ctx.size(atom):
        ctx.unify(atom, domain)
    elif ctx.size(atom) != 1:
        ctx.freeze(atom, "indexed by values computed at run time")


@register(aten.embedding.default)
def embedding(ctx: RuleContext):
    """Rows looked up by token ids are the vocabulary (an interface axis); rows
    looked up by computed ids are positions or buckets. Columns are features."""
    weight, ids = ctx.node.args[:2]
    w_axes = ctx.axes(weight)
    if ctx.is_model_input(ids):
        ctx.fact(
            w_axes[0],
            FactKind.PINNED,
            f"vocabulary: rows are looked up by token ids ({ctx.describe()})",
            interface=Interface.VOCABULARY,
        )
    else:
        ctx.fact(
            w_axes[0],
            FactKind.POSITION,
            f"rows are looked up by computed positions ({ctx.describe()})",
        )
    ctx.fact(w_axes[1], FactKind.EMBEDDING, ctx.describe())
    return (*ctx.axes(ids), w_axes[1])


@register(aten.index_select.default)
def index_select(ctx: RuleContext):
    x, dim, index = ctx.node.args[:3]
    axes = list(ctx.axes(x))
    dim %= len(axes)
    _indexed(ctx, axes[dim], index)
    axes[dim] = ctx.axes(index)[0]
    return tuple(axes)


def _constant_range(ctx: RuleContext, index, size: int) -> tuple[int, int] | None:
    """``(start, stop)`` if ``index`` is a constant 1-D run of consecutive positions."""
    value = ctx.constant(index)
    if value is None or value.dim() != 1 or value.numel() == 0 or value.is_floating_point():
        return None
    if value.is_meta:  # a structure-only copy: the positions are unknown
        return None
    positions = [int(v) % size for v in value.tolist()]
    start = positions[0]
    return (
        (start, start + len(positions))
        if positions == list(range(start, start + len(positions)))
        else None
    )


@register(aten.index.Tensor)
def index(ctx: RuleContext):
    """Advanced indexing ``x[i0, i1, ...]`` with index tensors on some axes.

    A constant run of positions on one axis (Falcon picks its key and value
    heads out of the fused projection with ``[..., [-2], :]``) is a slice; other
    index tensors address the axis by run-time values."""
    x, indices = ctx.node.args[:2]
    axes = ctx.axes(x)
    positions = [i for i, idx in enumerate(indices) if idx is not None]
    out = ctx.like_output()
    if len(positions) == 1 and _is_mask(indices[positions[0]]):
        return _masked(ctx, axes, positions[0], indices[positions[0]], out)
    if len(positions) == 1:
        (i,) = positions
        run = _constant_range(ctx, indices[i], ctx.shape(x)[i])
        if run is not None:
            size = ctx.shape(x)[i]
            start, stop = run
            pieces = ctx.algebra.cut(axes[i], [start, stop])
            piece = pieces[1] if start else pieces[0]
            if size == stop - start:
                piece = axes[i]
            ctx.unify_all([*axes[:i], piece, *axes[i + 1 :]], out)
            return out
    for i in positions:
        _indexed(ctx, axes[i], indices[i])
    index_rank = max(len(ctx.axes(indices[i])) for i in positions)
    adjacent = positions == list(range(positions[0], positions[-1] + 1))
    start = positions[0] if adjacent else 0
    rest = [a for i, a in enumerate(axes) if i not in positions]
    before, after = rest[:start], rest[start:]
    ctx.unify_all(before, out[: len(before)])
    ctx.unify_all(after, out[len(out) - len(after) :] if after else [])
    index_out = out[start : start + index_rank]
    for i in positions:
        ctx.broadcast_into(ctx.axes(indices[i]), index_out)
    ctx.value_domain = ctx.domain_of(x)
    return out


def _is_mask(index) -> bool:
    value = getattr(index, "meta", {}).get("val")
    return isinstance(value, torch.Tensor) and value.dtype == torch.bool


def _masked(ctx: RuleContext, axes, at: int, mask, out):
    """``x[mask]`` (a boolean mask over ``k`` axes from ``at``, kept as such by a
    draft capture: BLT's patcher): those axes become one axis of the selected
    positions, a count known only at run time; the axes around it stay."""
    covered = axes[at : at + len(ctx.axes(mask))]
    for atom in covered:
        if ctx.size(atom) != 1:
            ctx.freeze(atom, "selected by a boolean mask computed at run time")
    after = axes[at + len(covered) :]
    ctx.unify_all(axes[:at], out[:at])
    ctx.unify_all(after, out[at + 1 :])
    return out


@register(aten.gather.default)
def gather(ctx: RuleContext):
    x, dim, index = ctx.node.args[:3]
    axes, idx_axes = ctx.axes(x), ctx.axes(index)
    dim %= len(axes)
    _indexed(ctx, axes[dim], index)
    for d, (a, b) in enumerate(zip(axes, idx_axes, strict=True)):
        if d == dim:
            continue
        if ctx.size(a) == ctx.size(b):
            ctx.unify_all([a], [b])
        elif ctx.size(a) != 1:  # only the first positions are read: a slice by size
            ctx.freeze(a, f"gather reads only its first {ctx.size(b)} positions")
    return idx_axes


@register(aten.index_put.default, aten.index_put_.default)
def index_put(ctx: RuleContext):
    x, indices, values = ctx.node.args[:3]
    axes = ctx.axes(x)
    covered = []  # the axes of x the indices address: a boolean mask covers its rank
    at = 0
    for idx in indices:
        span = _mask_rank(idx)
        if idx is not None:
            for i in range(at, at + span):
                if span == 1:
                    _indexed(ctx, axes[i], idx)
                elif ctx.size(axes[i]) != 1:
                    ctx.freeze(axes[i], "selected by a boolean mask computed at run time")
                covered.append(i)
        at += span
    trailing = axes[covered[-1] + 1 :] if covered else axes
    v_axes = ctx.axes(values)
    # values broadcast against (indexed positions, *trailing), aligned from the right
    if v_axes is not None and trailing:
        count = min(len(v_axes), len(trailing))
        ctx.unify_all(v_axes[len(v_axes) - count :], trailing[len(trailing) - count :])
    return axes


def _mask_rank(index) -> int:
    """How many axes an index addresses: a boolean mask its rank, else one."""
    val = index.meta.get("val") if hasattr(index, "meta") else None
    if val is not None and val.dtype == torch.bool:
        return max(1, val.dim())
    return 1


@register(
    aten.scatter.src,
    aten.scatter.value,
    aten.scatter_.src,
    aten.scatter_.value,
    aten.scatter_add.default,
    aten.scatter_add_.default,
    aten.scatter_reduce.two,
)
def scatter(ctx: RuleContext):
    """``x.scatter(dim, index, src)``: ``src`` written into ``x`` at the positions
    along ``dim`` that ``index`` holds; every other axis of ``src`` is that axis
    of ``x`` (BLT's patch_reduce pools bytes into patches, features kept), or,
    where ``index`` reads only part of it, frozen."""
    x, dim, index = ctx.node.args[:3]
    axes = ctx.axes(x)
    dim %= len(axes)
    _indexed(ctx, axes[dim], index)
    source = ctx.node.args[3] if len(ctx.node.args) > 3 else None
    s_axes = ctx.axes(source) if isinstance(source, torch.fx.Node) else None
    if s_axes is None or len(s_axes) != len(axes):
        return axes
    read = ctx.shape(index)
    for d in range(len(axes)):
        if d == dim:
            continue
        if ctx.size(axes[d]) == ctx.size(s_axes[d]) == read[d]:
            ctx.unify(axes[d], s_axes[d])
        else:
            for atom in (axes[d], s_axes[d]):
                if ctx.size(atom) != 1:
                    ctx.freeze(atom, "scatter reads only part of it")
    return axes


@register(aten.index_add.default, aten.index_add_.default)
def index_add(ctx: RuleContext):
    """``x.index_add(dim, index, source)``: rows of ``source`` added into ``x``
    at the positions ``index`` holds (an MoE combining its experts' outputs);
    every other axis of ``source`` is the same axis of ``x``."""
    x, dim, index, source = ctx.node.args[:4]
    axes = ctx.axes(x)
    dim %= len(axes)
    _indexed(ctx, axes[dim], index)
    s_axes = ctx.axes(source)
    if s_axes is not None and len(s_axes) == len(axes):
        others = [i for i in range(len(axes)) if i != dim]
        ctx.unify_all([s_axes[i] for i in others], [axes[i] for i in others])
    return axes


@register(aten.histc.default)
def histc(ctx: RuleContext):
    """Counting routed tokens per expert: with integer bins over the value
    domain's positions, bin ``e`` is expert ``e``."""
    x, bins = ctx.node.args[:2]
    low, high = ctx.arg(2, "min", 0), ctx.arg(3, "max", 0)
    out = ctx.like_output()
    domain = ctx.domain_of(x)
    exact = domain is not None and ctx.size(domain) == bins and (low, high) == (0, bins - 1)
    if exact:
        ctx.unify(out[0], domain)
    else:
        _unknown_bins(ctx, out[0])
    return out


def _unknown_bins(ctx: RuleContext, atom: int) -> None:
    """Bins over values of unknown origin (DeepSeek-V4's token -> expert table,
    ``tid2eid``): the values name positions of this axis, and a cut would not
    renumber them."""
    if ctx.size(atom) != 1:
        ctx.freeze(
            atom,
            "counts values whose positions are not known (e.g. a token -> "
            "expert table), so its units cannot be renumbered",
        )


@register(aten.bincount.default)
def bincount(ctx: RuleContext):
    out = ctx.like_output()
    domain = ctx.domain_of(ctx.node.args[0])
    if domain is not None and ctx.size(domain) == ctx.size(out[0]):
        ctx.unify(out[0], domain)
    else:
        _unknown_bins(ctx, out[0])
    return out


@register(aten.one_hot.default)
def one_hot(ctx: RuleContext):
    x = ctx.node.args[0]
    out = ctx.like_output()
    domain = ctx.domain_of(x)
    ctx.unify_all(ctx.axes(x), out[:-1])
    if domain is not None and ctx.size(domain) == ctx.size(out[-1]):
        ctx.unify(out[-1], domain)
    else:
        _unknown_bins(ctx, out[-1])
    return out
