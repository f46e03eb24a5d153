"""From unit scores to a plan that hits a parameter target.

The budget is a fraction (``ratio``) or a count (``params``) of the
*block parameters*: those covered by every prunable group except the hidden
size (attention, MLP, experts, conv channels). Only groups of the chosen
``kinds`` are cut. Allocation:

* ``uniform``: the same fraction of units in every cut group, so one HF config
  still describes the model;
* ``global``: units ranked by score per parameter across all cut groups, so
  layers that matter keep more;
* ``adaptive``: ``global`` on scores standardised within each group (FLAP).

Attention groups are cut by whole KV groups (``heads="kv"``) or by the same
queries inside every KV group (``heads="q"``). Kept counts are rounded up to
multiples of ``round_to`` for hardware-friendly shapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import torch

from surgeon.analyzers import Analysis, Group, GroupKind
from surgeon.errors import InputError
from surgeon.plan import Plan
from surgeon.rewriters.resolve import units_of

__all__ = ["PlanOptions", "block_parameters", "make_plan"]


@dataclass(frozen=True)
class PlanOptions:
    ratio: float | None = field(
        default=None, metadata={"help": "fraction of block params to remove"}
    )
    params: int | None = field(default=None, metadata={"help": "block params to remove"})
    kinds: tuple[str, ...] = ("mlp", "expert_mlp")
    allocation: str = "global"
    heads: str = "kv"
    round_to: int = 1
    min_units: int = 1
    ignore: tuple[str, ...] = ()
    layers: int = 0
    hf_loadable: bool = False  # uniform widths that plain from_pretrained can load

    def __post_init__(self) -> None:
        if (self.ratio is None) == (self.params is None) and self.layers == 0:
            raise InputError("give exactly one of ratio=... or params=... (or layers=...)")
        if self.ratio is not None and (
            isinstance(self.ratio, bool)
            or not isinstance(self.ratio, (int, float))
            or not 0 <= self.ratio < 1
        ):
            raise InputError(f"ratio must be a number in [0, 1), not {self.ratio!r}")
        if self.params is not None and (
            isinstance(self.params, bool) or not isinstance(self.params, int) or self.params < 0
        ):
            raise InputError(f"params must be a non-negative int, not {self.params!r}")
        choices = {"allocation": ("uniform", "global", "adaptive"), "heads": ("kv", "q")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        for name in ("round_to", "min_units", "layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (name != "layers"):
                raise InputError(f"{name} must be a positive int, not {value!r}")
        unknown = set(self.kinds) - {k.value for k in GroupKind}
        if unknown:
            raise InputError(f"unknown group kinds {sorted(unknown)}")

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


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


@dataclass
class _Candidate:
    group: Group
    level: str | None  # the attention level units are taken from, else None
    scores: torch.Tensor  # per candidate unit
    cost: float  # parameters per candidate unit

    @property
    def size(self) -> int:
        return self.scores.numel()


def make_plan(
    analysis: Analysis,
    scores: Mapping[str, torch.Tensor],
    options: PlanOptions,
    block_scores: Mapping[str, float] | None = None,
) -> Plan:
    candidates = [_candidate(g, scores[g.id], options) for g in _cut_groups(analysis, options)]
    budget = _budget(analysis, options)
    if options.allocation == "uniform" or options.hf_loadable:
        counts = _uniform(candidates, budget, options)
        if options.hf_loadable:
            counts = _loadable_heads(candidates, counts, _hidden_size(analysis))
    else:
        counts = _global(candidates, budget, options)
    keep = {
        c.group.id: _kept_units(c, counts[c.group.id])
        for c in candidates
        if counts[c.group.id] < c.size
    }
    return Plan.for_analysis(analysis, keep, _blocks_to_remove(analysis, options, block_scores))


def _cut_groups(analysis: Analysis, options: PlanOptions) -> list[Group]:
    return [
        g
        for g in analysis.prunable
        if g.kind in options.kinds
        and not any(g.id == i or any(m.startswith(i) for m in g.modules) for i in options.ignore)
    ]


def _budget(analysis: Analysis, options: PlanOptions) -> float:
    if options.params is not None:
        return float(options.params)
    return (options.ratio or 0.0) * block_parameters(analysis)


def _candidate(group: Group, scores: torch.Tensor, options: PlanOptions) -> _Candidate:
    if group.kind != GroupKind.ATTENTION or len(group.levels) < 2:
        return _Candidate(group, None, scores.double(), group.params_covered / group.size)
    grid = scores.double().view(group.kv_heads, group.q_per_kv)
    if options.heads == "kv":
        return _Candidate(group, "kv", grid.sum(1), group.params_covered / group.kv_heads)
    per_query = group.params_covered / group.size * group.kv_heads * 0.75  # k/v rows stay
    return _Candidate(group, "q", grid.sum(0), per_query)


def _floor(c: _Candidate, options: PlanOptions) -> int:
    single = 1 if c.level is not None else 2  # see resolve: no single-unit axes
    minimum = max(options.min_units, c.group.min_units, single)
    return min(c.size, minimum)


def _rounded(c: _Candidate, count: int, options: PlanOptions) -> int:
    step = math.lcm(options.round_to, c.group.multiple_of)
    count = max(count, _floor(c, options))
    return min(c.size, -(-count // step) * step)


def _uniform(candidates: Sequence[_Candidate], budget: float, options) -> dict[str, int]:
    """The largest equal fraction whose removal stays within the budget."""

    def counts(fraction: float) -> dict[str, int]:
        return {
            c.group.id: _rounded(c, round(c.size * (1 - fraction)), options) for c in candidates
        }

    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        removed = sum((c.size - counts(middle)[c.group.id]) * c.cost for c in candidates)
        low, high = (middle, high) if removed <= budget else (low, middle)
    return counts(low)


def _hidden_size(analysis: Analysis) -> int | None:
    hidden = analysis.by_kind(GroupKind.HIDDEN)
    return hidden[0].size if hidden else None


def _loadable_heads(candidates, counts: dict[str, int], hidden: int | None) -> dict[str, int]:
    """Keep more heads where needed so the head count divides ``hidden_size``
    (transformers' config validators refuse anything else)."""
    if hidden is None:
        return counts
    fixed = {c.group.id: c for c in candidates if c.level is not None}
    for group_id, c in fixed.items():
        other = c.group.q_per_kv if c.level == "kv" else c.group.kv_heads
        count = counts[group_id]
        while count < c.size and hidden % (count * other):
            count += 1
        counts[group_id] = count
    return counts


def _global(candidates: Sequence[_Candidate], budget: float, options) -> dict[str, int]:
    """Remove the units with the least score per parameter first."""
    ranked = []
    for c in candidates:
        values = c.scores
        if options.allocation == "adaptive" and values.numel() > 1:
            values = (values - values.mean()) / values.std().clamp_min(1e-12)
        for value in values.tolist():
            ranked.append((value / c.cost if options.allocation == "global" else value, c))
    ranked.sort(key=lambda item: item[0])
    counts = {c.group.id: c.size for c in candidates}
    removed = 0.0
    for _, c in ranked:
        if removed + c.cost > budget:
            continue
        if counts[c.group.id] - 1 < _floor(c, options):
            continue
        counts[c.group.id] -= 1
        removed += c.cost
    return {c.group.id: _rounded(c, counts[c.group.id], options) for c in candidates}


def _kept_units(c: _Candidate, count: int) -> list[int]:
    kept = sorted(torch.topk(c.scores, count).indices.tolist())
    group = c.group
    if c.level is None:
        return kept
    full = {"kv": tuple(range(group.kv_heads)), "q": tuple(range(group.q_per_kv))}
    full[c.level] = tuple(kept)
    return units_of(full, group)


def _blocks_to_remove(analysis: Analysis, options: PlanOptions, block_scores) -> tuple[str, ...]:
    if not options.layers:
        return ()
    if not block_scores:
        raise InputError("removing layers needs block scores (calibrate with block influence)")
    removable = [b.name for b in analysis.blocks if b.removable]
    ranked = sorted(removable, key=lambda name: block_scores.get(name, float("inf")))
    return tuple(ranked[: options.layers])
