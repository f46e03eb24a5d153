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
    distinct parameters of the blocks' groups (attention, MLP, experts, channels),
    frozen ones included, and of a hidden size cut exactly (a BatchNorm CNN's
    residual streams count; an LLM's or a ViT's, under norm statistics, do not);
    fused experts belong to two groups and count once. A frozen group's parameters
    are block parameters all the same, as an attention left out of ``kinds`` is:
    a target is the same share of the same architecture whether its heads happen to
    be cuttable (timm's Swin) or written into the code (torchvision's), and the cut
    groups carry it. Only modules under the ``inside`` prefixes, only groups of
    ``kinds``, when given."""
    sizes = {
        m.param: m.numel * (1 if weights is None else weights.get(m.param, 0.0))
        for g in analysis.groups
        if _counted(g) and (kinds is None or g.kind in kinds)
        for m in g.members
        if not m.buffer and (inside is None or m.module.startswith(inside))
    }
    return sum(sizes.values())


# kinds whose groups hold block parameters even when frozen (not the hidden size,
# nor a model input's or output's axis, nor a vocabulary)
_BLOCK_KINDS = frozenset(
    {
        GroupKind.ATTENTION,
        GroupKind.MLP,
        GroupKind.EXPERTS,
        GroupKind.EXPERT_MLP,
        GroupKind.CHANNELS,
    }
)


def _counted(group) -> bool:
    if group.frozen is not None:
        return group.kind in _BLOCK_KINDS
    return group.kind != GroupKind.HIDDEN or group.mask_equivalent


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
