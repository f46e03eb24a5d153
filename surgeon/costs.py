"""What a plan's target is measured in: block parameters and matrix-product FLOPs.

The planner budgets in these units and :class:`~surgeon.prune.PruneReport`
reports in them, so a target and the report it produces always agree.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from surgeon.analyzers import Analysis, GroupKind
from surgeon.analyzers.sizes import flop_weights

__all__ = ["block_flops", "block_parameters", "count_flops", "flop_weights"]


def block_parameters(analysis: Analysis) -> int:
    """Elements of the distinct parameters that some group other than the hidden
    size can cut (fused experts belong to two groups and count once)."""
    sizes = {
        m.param: m.numel
        for g in analysis.prunable
        if g.kind != GroupKind.HIDDEN
        for m in g.members
        if not m.buffer
    }
    return sum(sizes.values())


def count_flops(model: nn.Module) -> int:
    """A dense token's matrix-product FLOPs: ``sum(numel * flop_weights)``."""
    params = dict(model.named_parameters(remove_duplicate=False))  # a tied lm_head multiplies too
    return round(sum(params[n].numel() * w for n, w in flop_weights(model).items()))


def block_flops(analysis: Analysis, weights: Mapping[str, float]) -> float:
    """FLOPs per token of the parameters :func:`block_parameters` counts."""
    sizes = {
        m.param: m.numel * weights.get(m.param, 0.0)
        for g in analysis.prunable
        if g.kind != GroupKind.HIDDEN
        for m in g.members
        if not m.buffer
    }
    return sum(sizes.values())
