"""What the planner is asked for: the target, which groups it cuts, how the
budget is spread and how many whole blocks go (see :mod:`surgeon.plan.planner`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from surgeon.analyzers import GroupKind
from surgeon.errors import InputError
from surgeon.options import check_fields, option, refuse_unknown
from surgeon.plan.depth import BLOCK_OVERHEAD

__all__ = ["ALLOCATIONS", "TARGETS", "PlanOptions"]

TARGETS = ("ratio", "params", "flops_ratio", "flops")
ALLOCATIONS = ("uniform", "global", "adaptive", "relative")


@dataclass(frozen=True)
class PlanOptions:
    """Options of the planner: the target, what is cut, how the budget is spread.

    Exactly one target (``ratio``, ``params``, ``flops_ratio``, ``flops``), or
    whole blocks only (``layers=N``)."""

    ratio: float | None = option(
        None, "fraction of the block parameters to remove", minimum=0, below=1
    )
    params: int | None = option(None, "block parameters to remove", minimum=0)
    flops_ratio: float | None = option(
        None, "fraction of the block FLOPs per token to remove", minimum=0, below=1
    )
    flops: int | None = option(None, "block FLOPs per token to remove", minimum=0)
    kinds: tuple[str, ...] = option(
        ("mlp", "expert_mlp", "channels"),
        "group kinds to cut (attention heads cost the most quality; 'channels' are a "
        "convolution's channels outside the residual stream)",
        choices=[k.value for k in GroupKind],
    )
    exact_streams: bool = option(
        True,
        "also cut residual streams (kind hidden) where removing equals masking "
        "(BatchNorm CNNs); a stream under LayerNorm/RMSNorm is cut only with 'hidden' in kinds",
    )
    allocation: str = option(
        "relative",
        "how the budget is spread over layers: 'relative' (each layer by the spread of its "
        "scores; measured best), 'global' (by raw score), 'adaptive' (FLAP), 'uniform' (the "
        "same width everywhere: loads with plain from_pretrained)",
        choices=ALLOCATIONS,
    )
    heads: str = option(
        "kv",
        "attention cut by whole KV groups ('kv') or queries per group ('q')",
        choices=("kv", "q"),
    )
    round_to: int | None = option(
        None,
        "kept channels a multiple of N (default: the width's own alignment, up to 64)",
        minimum=1,
    )
    min_units: int = option(1, "units every cut group keeps at least", minimum=1)
    ignore: tuple[str, ...] = option((), "group ids or module prefixes never to cut")
    layers: int | str = option(
        0,
        "whole blocks to remove (counted toward the target), or 'auto': as many as keep "
        "decode speed in step with size (faster, costs perplexity); 0 cuts widths only",
        minimum=0,
        words=("auto",),
    )
    block_overhead: int = option(
        BLOCK_OVERHEAD,
        "for layers='auto': a block's fixed decode cost, in parameters read",
        minimum=0,
    )
    hf_loadable: bool = option(
        False, "uniform widths and head counts that plain from_pretrained can load"
    )

    def __post_init__(self) -> None:
        check_fields(self)
        given = [t for t in TARGETS if getattr(self, t) is not None]
        if len(given) > 1 or (not given and self.layers in (0, "auto")):
            raise InputError(
                "give exactly one of ratio=..., params=..., flops_ratio=... or flops=... "
                "(or layers=...)"
            )

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def from_kwargs(cls, ratio: float | None, options: Mapping[str, Any]) -> PlanOptions:
        """Options given as keyword arguments: unknown names are refused."""
        refuse_unknown(cls, options, "the planner")
        return cls(ratio=ratio, **options)
