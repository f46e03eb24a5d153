"""Additions, and the skip connections among them.

``x + f(x)`` adds back a tensor that was also read by the computation beside
it: the axes of such a sum are a residual stream (a transformer's hidden size,
a ResNet stage's channels). The grouping calls a group ``hidden`` when it is
such a stream through more than one block; a skip inside one block stays
that block's channels. The coupling itself is plain broadcasting.
"""

from __future__ import annotations

from torch import fx, ops

from ..axes import FactKind
from ..ops import RESIDUAL_PASS_THROUGH
from .context import RuleContext
from .elementwise import broadcast
from .registry import register

aten = ops.aten

# Ops that hand on the same values: a skip may be cast, copied or dropped out first.
_CARRIERS = RESIDUAL_PASS_THROUGH - {"aten.add.Tensor"}


@register(aten.add.Tensor, aten.add_.Tensor)
def add(ctx: RuleContext):
    """Broadcasting; and when one operand of the same shape as the sum is
    also read elsewhere (it skipped past the other operand's computation),
    the sum's axes carry a residual stream."""
    out = broadcast(ctx)
    operands = [a for a in ctx.node.args[:2] if ctx.axes(a) is not None]
    if len(operands) != 2 or not isinstance(out, tuple):
        return out
    shape = ctx.out_shape()
    if any(
        ctx.shape(a) != shape or ctx.is_weight(a) or ctx.constant(a) is not None for a in operands
    ):
        return out
    if any(_read_elsewhere(a) for a in operands):
        for atom in out:
            if ctx.size(atom) > 1:
                ctx.fact(atom, FactKind.RESIDUAL, ctx.describe())
    return out


def _read_elsewhere(value: fx.Node) -> bool:
    """True if ``value`` (or what it was cast or copied from) has another reader."""
    while isinstance(value, fx.Node):
        if len(value.users) > 1:
            return True
        if value.op != "call_function" or str(value.target) not in _CARRIERS:
            return False
        value = value.args[0]
    return False
