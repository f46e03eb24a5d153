"""How big a model is, and how much of it one generated token reads.

``flop_weights`` says which parameters take part in matrix products and how
often per token; :class:`ModelSize` sums it into the two numbers a speed
estimate needs: parameters held, and parameter elements read per token at
batch 1 (where decode time is the time to read the weights).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import nn

__all__ = ["ModelSize", "flop_weights"]


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


@dataclass(frozen=True)
class ModelSize:
    """``params``: distinct parameter elements (a tied weight counts once).
    ``reads``: elements of matrix-product weights one token reads at batch 1:
    every Linear weight (a tied lm_head too: decode reads it again), ``top_k /
    experts`` of fused expert weights; embedding rows, norms and biases are
    left out (a gather reads one row; the others are small). ``read_fraction``:
    that share per parameter name. ``generates``: the model decodes token by
    token (``can_generate()`` of a transformers model)."""

    params: int
    reads: float
    read_fraction: Mapping[str, float] = field(default_factory=dict, repr=False)
    generates: bool = False

    @classmethod
    def of(cls, model: nn.Module) -> ModelSize:
        params = sum(p.numel() for p in model.parameters())
        named = dict(model.named_parameters(remove_duplicate=False))
        fraction = {n: w / 2 for n, w in flop_weights(model).items() if n in named}
        reads = sum(named[n].numel() * share for n, share in fraction.items())
        can_generate = getattr(model, "can_generate", None)
        return cls(params, reads, fraction, bool(callable(can_generate) and can_generate()))

    def flops_of(self, numels: Mapping[str, int]) -> float:
        """Matrix-product FLOPs per token of the parameters ``{name: numel}``: 2
        per element a token reads (experts at ``top_k / experts``), the same
        weights as :func:`flop_weights`."""
        return 2.0 * sum(n * self.read_fraction.get(p, 0.0) for p, n in numels.items())

    def to_dict(self) -> dict[str, float]:
        return {"params": self.params, "reads_per_token": self.reads, "generates": self.generates}
