"""The op table: every set of aten op names that a pass treats alike, in one place.

Coupling rules are registered per op in :mod:`surgeon.analyzers.rules`; these
sets are the few facts other passes need about ops without running a rule:
which ops only carry values through (a cast, a copy), which re-lay a tensor,
which multiply by a weight, and which a residual stream passes through.
"""

from __future__ import annotations

__all__ = ["LAYOUT_OPS", "PRODUCTS", "RESHAPES", "RESIDUAL_PASS_THROUGH", "VALUE_PRESERVING"]

# The same values, maybe in another dtype, device or storage.
VALUE_PRESERVING = frozenset(
    (
        "aten.lift_fresh_copy.default",
        "aten.clone.default",
        "aten.alias.default",
        "aten.detach.default",
        "aten.contiguous.default",
        "aten._to_copy.default",
        "aten.to.dtype",
        "aten.to.device",
        "aten.to.dtype_layout",
    )
)

# The same elements in another shape.
RESHAPES = frozenset(("aten.view.default", "aten.reshape.default", "aten._unsafe_view.default"))

# Ops that only re-lay or re-type a tensor: a weight passed through them is still a weight.
LAYOUT_OPS = (
    VALUE_PRESERVING
    | RESHAPES
    | frozenset(
        (
            "aten.t.default",
            "aten.transpose.int",
            "aten.permute.default",
            "aten.unsqueeze.default",
            "aten.expand.default",
            "aten.slice.Tensor",
            "aten.select.int",
            "aten.squeeze.dim",
            "aten.unflatten.int",
        )
    )
) - {"aten.lift_fresh_copy.default"}

# Products with a weight operand.
PRODUCTS = frozenset(
    ("aten.linear.default", "aten.matmul.default", "aten.mm.default", "aten.addmm.default")
)

# What a residual stream may pass through between blocks and stay the stream:
# additions, casts and copies, dropout, and flattening of tokens (OPT's MLP).
RESIDUAL_PASS_THROUGH = (
    frozenset(("aten.add.Tensor", "aten.dropout.default"))
    | RESHAPES
    | (VALUE_PRESERVING - {"aten.lift_fresh_copy.default", "aten.detach.default", "aten.to.device"})
)
