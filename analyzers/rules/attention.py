"""``scaled_dot_product_attention``, with and without grouped-query heads."""

from __future__ import annotations

from torch import ops

from ..axes import FactKind
from .context import RuleContext
from .registry import register

aten = ops.aten


@register(aten.scaled_dot_product_attention.default)
def scaled_dot_product_attention(ctx: RuleContext):
    """``q[..., Hq, L, E] k[..., Hk, S, E] v[..., Hk, S, Ev] -> out[..., Hq, L, Ev]``.

    With ``enable_gqa`` (Hq = g * Hk) the query-head axis is the product of the
    KV-head axis and a new queries-per-KV-head axis, exactly as ``repeat_kv``
    makes it on the eager path, so both paths give the same groups.
    """
    q, k, v = ctx.node.args[:3]
    mask = ctx.arg(3, "attn_mask")
    qa, ka, va = ctx.axes(q), ctx.axes(k), ctx.axes(v)
    out = ctx.like_output()
    where = ctx.describe()
    for leaf in ctx.algebra.product_leaves(ka[-3]):
        broadcast = ctx.algebra.has_fact(leaf, FactKind.BROADCAST)
        ctx.fact(leaf, FactKind.Q_PER_KV if broadcast else FactKind.KV_HEAD, where)
        ctx.fact(leaf, FactKind.HEAD, where)
    hq, hk = ctx.size(qa[-3]), ctx.size(ka[-3])
    if hq != hk:
        per_kv = ctx.algebra.new(hq // hk)
        ctx.fact(per_kv, FactKind.Q_PER_KV, where)
        ctx.fact(per_kv, FactKind.HEAD, where)
        ctx.algebra.unify_products([qa[-3]], [ka[-3], per_kv])
    else:
        ctx.unify_all([qa[-3]], [ka[-3]])
    ctx.unify_all([ka[-3]], [va[-3]])
    for atom in (qa[-1], ka[-1], va[-1]):
        ctx.fact(atom, FactKind.HEAD_DIM, where)
        if hq == hk == 1:  # as the eager path's batched products say (linalg._one_head)
            ctx.freeze(atom, "the width of a single attention head")
    ctx.unify(qa[-1], ka[-1])
    ctx.unify_all(qa[:-3], out[:-3])
    ctx.unify_all(ka[:-3], qa[:-3])
    ctx.unify_all(va[:-3], qa[:-3])
    ctx.unify_all([qa[-3], qa[-2], va[-1]], out[-3:])
    ctx.unify_all([ka[-2]], [va[-2]])
    if ctx.axes(mask) is not None:
        scores = (*out[:-1], ka[-2])
        ctx.broadcast_into(ctx.axes(mask), scores)
    return out
