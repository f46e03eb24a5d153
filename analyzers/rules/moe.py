"""Fused mixture-of-experts kernels.

transformers 5.x stores experts as 3-D weights (``gate_up_proj [E, 2I, H]``,
``down_proj [E, H, I]``) and runs them through ``grouped_mm`` over tokens sorted
by expert, with per-expert offsets. The offsets come from counting the router's
top-k choices (``histc``), so the expert axis of the weights meets the router's
output axis through the offsets' value domain.
"""

from __future__ import annotations

from ..axes import FactKind
from .context import RuleContext
from .registry import register


@register("transformers.grouped_mm_fallback.default", "aten._grouped_mm.default")
def grouped_mm(ctx: RuleContext):
    """``x[T, K] @ w[E, K, N] -> out[T, N]`` with tokens grouped by ``offs[E]``."""
    x, weight, offsets = ctx.node.args[:3]
    x_axes, w_axes = ctx.axes(x), ctx.axes(weight)
    out = ctx.like_output()
    if len(x_axes) != 2 or len(w_axes) != 3:
        for atom in (*x_axes, *w_axes):
            ctx.freeze(atom, "only the 2-D x 3-D grouped product is understood")
        return out
    ctx.fact(w_axes[0], FactKind.EXPERT, ctx.describe())
    # grouped_mm kernels (CPU and CUDA) need row strides of 16 bytes
    itemsize = weight.meta["val"].dtype.itemsize
    for atom in (w_axes[1], w_axes[2]):
        ctx.fact(
            atom,
            FactKind.ALIGN,
            f"{ctx.describe()}: rows of 16 bytes",
            value=max(1, 16 // itemsize),
        )
    ctx.unify(x_axes[0], out[0])
    ctx.unify(x_axes[1], w_axes[1])
    ctx.unify(out[1], w_axes[2])
    if ctx.axes(offsets) is not None:
        ctx.unify(ctx.axes(offsets)[0], w_axes[0])
    return out
