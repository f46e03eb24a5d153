"""What a plan's target is measured in: block parameters and matrix-product FLOPs.

The planner budgets in these units and :class:`~surgeon.prune.PruneReport`
reports in them, so a target and the report it produces always agree.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from surgeon.analyzers import Analysis, GroupKind

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


def flop_weights(model: nn.Module) -> dict[str, float]:
    """FLOPs per token contributed by one element of each parameter that takes
    part in a matrix product: 2 for an ``nn.Linear`` weight (a multiply and an
    add), ``2 * top_k / experts`` for fused 3-D expert weights (each token runs
    ``top_k`` of them; ``num_experts_per_tok`` of the config). Attention scores,
    norms, biases, embeddings and routers are not counted."""
    config = getattr(model, "config", None)
    top_k = getattr(config, "num_experts_per_tok", None)
    weights = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.Linear):
            weights[prefix + "weight"] = 2.0
            continue
        for param_name, param in module.named_parameters(recurse=False):
            if top_k and param.dim() == 3 and param.shape[0] >= top_k:
                weights[prefix + param_name] = 2.0 * top_k / param.shape[0]
    return weights


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
