"""Reductions, softmax, top-k and sorting.

Sums are exact under zero-masking. Means and variances divide by the axis
length, so removing units differs from masking (a ``STATISTIC`` fact). Softmax,
max and top-k over an axis agree with masking only if removed units are masked
with ``-inf`` (a ``SELECT`` fact); top-k also needs at least ``k`` units left.
"""

from __future__ import annotations

from torch import ops

from ..axes import FactKind
from .context import RuleContext
from .registry import register

aten = ops.aten


def _dims(ctx: RuleContext, rank: int, dims) -> list[int]:
    if dims is None or dims == []:
        return list(range(rank))
    dims = dims if isinstance(dims, (list, tuple)) else [dims]
    return sorted({d % rank for d in dims})


def _reduce(ctx: RuleContext, dims_index: int, fact: FactKind | None, keepdim_index: int):
    x = ctx.node.args[0]
    axes = ctx.axes(x)
    dims = _dims(ctx, len(axes), ctx.arg(dims_index, "dim"))
    keepdim = bool(ctx.arg(keepdim_index, "keepdim", False))
    if fact is not None:
        for d in dims:
            ctx.fact(axes[d], fact, f"reduced by {ctx.describe()}")
    kept = [
        (ctx.algebra.new(1) if d in dims else a)
        for d, a in enumerate(axes)
        if keepdim or d not in dims
    ]
    outs = [tuple(kept) for shape in ctx.out_shapes() if shape is not None]
    return outs[0] if len(outs) == 1 else outs


@register(aten.sum.dim_IntList, aten.nansum.default, aten.prod.dim_int)
def sum_(ctx: RuleContext):
    """Exact under masking when the summed values of removed units are zero; after a
    nonlinearity with f(0) != 0 they are not, and no weight is left to mask."""
    return _reduce(ctx, 1, FactKind.SUMMED, 2)


@register(aten.sum.default)
def sum_all(ctx: RuleContext):
    return ()


@register(aten.mean.dim, aten.var.correction, aten.std.correction, aten.var.dim, aten.std.dim)
def mean(ctx: RuleContext):
    return _reduce(ctx, 1, FactKind.STATISTIC, 2 if "mean" in str(ctx.node.target) else 3)


@register(aten.var_mean.correction, aten.std_mean.correction)
def var_mean(ctx: RuleContext):
    return _reduce(ctx, 1, FactKind.STATISTIC, 3)


@register(aten.mean.default)
def mean_all(ctx: RuleContext):
    for atom in ctx.axes(ctx.node.args[0]):
        ctx.fact(atom, FactKind.STATISTIC, f"reduced by {ctx.describe()}")
    return ()


@register(aten.linalg_vector_norm.default)
def vector_norm(ctx: RuleContext):
    return _reduce(ctx, 2, None, 3)


@register(
    aten.amax.default,
    aten.amin.default,
    aten.logsumexp.default,
    aten.max.dim,
    aten.min.dim,
    aten.any.dim,
    aten.all.dim,
    aten.argmax.default,
    aten.argmin.default,
)
def select_reduce(ctx: RuleContext):
    result = _reduce(ctx, 1, FactKind.SELECT, 2)
    target = str(ctx.node.target)
    if "arg" in target or target.endswith(("max.dim", "min.dim")):
        axes = ctx.axes(ctx.node.args[0])
        dims = _dims(ctx, len(axes), ctx.arg(1, "dim"))
        if len(dims) == 1:
            domain = axes[dims[0]]
            ctx.value_domain = domain if "arg" in target else [None, domain]
    return result


@register(aten.softmax.int, aten._softmax.default, aten.log_softmax.int, aten._log_softmax.default)
def softmax(ctx: RuleContext):
    x = ctx.node.args[0]
    axes = ctx.axes(x)
    dim = ctx.node.args[1] % len(axes)
    ctx.fact(axes[dim], FactKind.SELECT, f"softmax by {ctx.describe()}")
    _note_router(ctx, x, axes[dim])
    return axes


def _note_router(ctx: RuleContext, logits, atom: int) -> None:
    router = ctx.producer(logits)
    if router is not None:
        ctx.fact(atom, FactKind.ROUTER, router)


@register(aten.topk.default)
def topk(ctx: RuleContext):
    """The indices output holds positions along ``dim``: it carries that axis as
    its value domain, which routing ops (histc, one_hot) turn back into an axis."""
    x, k = ctx.node.args[:2]
    axes = ctx.axes(x)
    dim = ctx.arg(2, "dim", -1) % len(axes)
    ctx.fact(axes[dim], FactKind.SELECT, f"top-{k} by {ctx.describe()}", value=k)
    _note_router(ctx, x, axes[dim])
    out = list(axes)
    out[dim] = ctx.algebra.new(k)
    ctx.value_domain = [None, axes[dim]]
    return [tuple(out), tuple(out)]


@register(aten.sort.default, aten.sort.stable)
def sort(ctx: RuleContext):
    """Sorted values keep the input's value domain; the permutation indexes ``dim``."""
    x = ctx.node.args[0]
    axes = ctx.axes(x)
    dim = ctx.arg(1, "dim", -1)
    dim = (dim if isinstance(dim, int) else -1) % len(axes)
    ctx.value_domain = [ctx.domain_of(x), axes[dim]]
    return [axes, axes]


@register(aten.argsort.default, aten.argsort.stable)
def argsort(ctx: RuleContext):
    axes = ctx.axes(ctx.node.args[0])
    ctx.value_domain = axes[ctx.arg(1, "dim", -1) % len(axes)]
    return axes


@register(aten.cumsum.default, aten.cumprod.default)
def cumulative(ctx: RuleContext):
    """Running sums along an axis: exact under zero-masking."""
    return ctx.axes(ctx.node.args[0])


@register(aten.diff.default)
def diff(ctx: RuleContext):
    x = ctx.node.args[0]
    axes = list(ctx.axes(x))
    dim = ctx.arg(2, "dim", -1) % len(axes)
    ctx.freeze(axes[dim], "differences of neighbours depend on positions")
    axes[dim] = ctx.like_output()[dim]
    return tuple(axes)
