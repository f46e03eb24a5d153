"""What a plan's target is measured in: block parameters and matrix-product FLOPs.

The planner budgets in these units and :class:`~surgeon.prune.PruneReport`
reports in them, so a target and the report it produces always agree.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from surgeon.analyzers import Analysis, GroupKind
from surgeon.analyzers.sizes import flop_weights

__all__ = ["block_flops", "block_parameters", "count_flops", "covered", "flop_weights"]


def covered(
    analysis: Analysis,
    weights: Mapping[str, float] | None = None,
    inside: tuple[str, ...] | None = None,
    kinds: tuple[str, ...] | None = None,
) -> float:
    """``numel x weights[param]`` (``numel`` without ``weights``) summed over the
    distinct parameters that some group can cut, other than a hidden size under
    norm statistics (an LLM's, a ViT's; a BatchNorm CNN's residual streams are
    cut exactly and count); fused experts belong to two groups and count once.
    Only modules under the ``inside`` prefixes, only groups of ``kinds``, when
    given."""
    sizes = {
        m.param: m.numel * (1 if weights is None else weights.get(m.param, 0.0))
        for g in analysis.prunable
        if (g.kind != GroupKind.HIDDEN or g.mask_equivalent) and (kinds is None or g.kind in kinds)
        for m in g.members
        if not m.buffer and (inside is None or m.module.startswith(inside))
    }
    return sum(sizes.values())


def block_parameters(analysis: Analysis) -> int:
    """Elements of the parameters the target is counted in: :func:`covered`."""
    return int(covered(analysis))


def count_flops(model: nn.Module) -> int:
    """A dense token's matrix-product FLOPs: ``sum(numel * flop_weights)``."""
    params = dict(model.named_parameters(remove_duplicate=False))  # a tied lm_head multiplies too
    return round(sum(params[n].numel() * w for n, w in flop_weights(model).items()))


def block_flops(analysis: Analysis, weights: Mapping[str, float]) -> float:
    """FLOPs per token of the parameters :func:`block_parameters` counts."""
    return covered(analysis, weights)
