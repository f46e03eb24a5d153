"""How many units each cut group keeps, and which: the planner's allocations.

``uniform`` finds the largest equal fraction within the budget; ``global``,
``adaptive`` and ``relative`` rank every unit of every cut group on one scale
and remove from the bottom. Counts are then rounded to hardware-friendly
multiples (:func:`channel_step`) and never go below a group's floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from surgeon.analyzers import Analysis, Group, GroupKind
from surgeon.errors import InputError
from surgeon.plan.options import PlanOptions
from surgeon.rewriters.resolve import units_of

__all__ = [
    "CHANNEL_KINDS",
    "Candidate",
    "channel_step",
    "global_counts",
    "hidden_size",
    "keep_comparisons",
    "kept_units",
    "loadable_heads",
    "uniform_counts",
]


@dataclass
class Candidate:
    group: Group
    level: str | None  # the attention level units are taken from, else None
    scores: torch.Tensor  # per candidate unit
    cost: float  # parameters per candidate unit

    @property
    def size(self) -> int:
        return self.scores.numel()


def _floor(c: Candidate, options: PlanOptions) -> int:
    single = 1 if c.level is not None else 2  # see resolve: no single-unit axes
    minimum = max(options.min_units, c.group.min_units, single)
    return min(c.size, minimum)


CHANNEL_KINDS = frozenset(
    {GroupKind.MLP, GroupKind.EXPERT_MLP, GroupKind.HIDDEN, GroupKind.CHANNELS}
)


def channel_step(width: int) -> int:
    """The default multiple for kept channels of a ``width``-wide group: the
    largest power of two that divides ``width``, at most 64 and at most
    ``width / 64`` (so rounding never costs more than 1/64 of the width)."""
    alignment = width & -width
    fine = 1 << max((width // 64).bit_length() - 1, 0)
    return max(1, min(64, alignment, fine))


def _step(c: Candidate, options: PlanOptions) -> int:
    step = 1
    if c.level is None and c.group.kind in CHANNEL_KINDS:
        step = options.round_to or channel_step(c.group.size)
    return math.lcm(step, c.group.multiple_of)


def _rounded(c: Candidate, count: int, options: PlanOptions) -> int:
    step = _step(c, options)
    count = max(count, _floor(c, options))
    return min(c.size, -(-count // step) * step)


def keep_comparisons(
    analysis: Analysis, candidates: Sequence[Candidate], counts: dict[str, int], options
) -> dict[str, int]:
    """``counts`` with a cut group moved one step up (else down) where it would
    change the outcome of a width comparison in the model's code (Hiera's
    ``hidden_size != hidden_size_output``: analyzers/compared.py), which apply
    refuses."""
    by_id = {c.group.id: c for c in candidates if c.level is None}
    counts = dict(counts)
    for pair in analysis.compared:
        for group in pair.groups:
            c = by_id.get(group)
            if not pair.flipped(counts) or c is None or counts[group] >= c.size:
                continue
            step = _step(c, options)
            for moved in (counts[group] + step, counts[group] - step):
                fits = _floor(c, options) <= moved <= c.size
                if fits and not pair.flipped({**counts, group: moved}):
                    counts[group] = moved
                    break
    return counts


def uniform_counts(candidates: Sequence[Candidate], budget: float, options) -> dict[str, int]:
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


def hidden_size(analysis: Analysis) -> int | None:
    hidden = analysis.by_kind(GroupKind.HIDDEN)
    return hidden[0].size if hidden else None


def loadable_heads(candidates, counts: dict[str, int], hidden: int | None) -> dict[str, int]:
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


def global_counts(candidates: Sequence[Candidate], budget: float, options) -> dict[str, int]:
    """Remove the units with the least score per parameter first."""
    ranked = []
    for c in candidates:
        values = c.scores
        if options.allocation == "adaptive" and values.numel() > 1:
            values = (values - values.mean()) / values.std().clamp_min(1e-12)
        if options.allocation == "relative":
            values = _log_ratios(c)
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


def _log_ratios(c: Candidate) -> torch.Tensor:
    if (c.scores < 0).any():
        raise InputError(
            f"planner: allocation='relative' needs non-negative scores; group {c.group.id} "
            "has negative ones (a standardised criterion?)"
        )
    logs = c.scores.clamp_min(c.scores.max().clamp_min(1e-300) * 1e-12).log()
    return logs - logs.mean()


def kept_units(c: Candidate, count: int) -> list[int]:
    kept = sorted(torch.topk(c.scores, count).indices.tolist())
    group = c.group
    if c.level is None:
        return kept
    full = {level.name: tuple(range(level.size)) for level in group.levels}
    full[c.level] = tuple(kept)
    return units_of(full, group)
