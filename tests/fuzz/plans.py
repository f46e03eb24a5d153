"""Random plans over an analysis: which groups to cut, which units to keep,
which blocks to remove, and whether to cut in place."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import strategies as st

import surgeon
from surgeon.rewriters.resolve import units_of

from .grammar import HypothesisChooser

__all__ = ["Trial", "draw_trial", "plans"]


@dataclass(frozen=True)
class Trial:
    """What to do with one analysed model: the plan, and whether to cut in place."""

    plan: surgeon.Plan
    inplace: bool = False


def draw_trial(analysis: surgeon.Analysis, c) -> Trial:
    """A random valid plan: a random subset of the prunable groups (norm-statistics
    groups rarely), each with a random full grid of kept units (at least
    ``min_units``), sometimes whole levels kept; sometimes removable blocks."""
    keep: dict[str, list[int]] = {}
    candidates = list(analysis.prunable)
    for group in candidates:
        if not c.flag(0.6 if group.mask_equivalent else 0.15):
            continue
        units = _grid(group, c)
        if units is not None:
            keep[group.id] = units
    exact = [g for g in candidates if g.mask_equivalent]
    if not keep and exact:
        group = c.pick(exact)
        units = _grid(group, c)
        if units is not None:
            keep[group.id] = units
    if analysis.frozen and c.flag(0.05):  # naming a frozen group whole is allowed
        group = c.pick(list(analysis.frozen))
        keep[group.id] = list(range(group.size))
    remove: list[str] = []
    containers: dict[str, list] = {}
    for block in analysis.blocks:
        containers.setdefault(block.container, []).append(block)
    for blocks in containers.values():
        removable = [b.name for b in blocks if b.removable]
        if removable and c.flag(0.35):
            count = c.int(1, min(len(removable), len(blocks) - 1))
            remove += [removable[i] for i in c.sample(len(removable), count)]
    return Trial(surgeon.Plan(keep, tuple(remove)), inplace=c.flag(0.25))


def _grid(group: surgeon.Group, c) -> list[int] | None:
    """Levels the group keeps whole (``whole_levels``, refused otherwise; the
    refusal has its regression test) are drawn as before, then kept whole, so
    the other levels get cut and verified, and the draws stay the same."""
    whole = dict(group.whole_levels)
    for _ in range(4):
        kept = {}
        for level in group.levels:
            if level.size == 1 or c.flag(0.25):
                kept[level.name] = tuple(range(level.size))
            else:
                count = c.int(1, level.size)
                kept[level.name] = tuple(c.sample(level.size, count))
            if level.name in whole:
                kept[level.name] = tuple(range(level.size))
        if math.prod(len(k) for k in kept.values()) >= group.min_units:
            return units_of(kept, group)
    return None


@st.composite
def plans(draw, analysis: surgeon.Analysis) -> Trial:
    """Hypothesis strategy of :class:`Trial` for one analysis."""
    return draw_trial(analysis, HypothesisChooser(draw))
