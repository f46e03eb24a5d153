"""The sweep's random cuts: a random half of a group's units on one level,
honouring what the analysis says a cut must keep (minimum units, multiples,
whole levels, compared widths), as a planner does.
"""

from __future__ import annotations

import random

from coverage_outcomes import Frozen


def half(group, level: str, rng: random.Random, fraction: float = 0.5) -> list[int] | None:
    """Kept units when ``level`` keeps about ``fraction`` (random indices), the
    other levels whole; None when the group cannot lose units on that level."""
    from surgeon.rewriters.resolve import units_of

    sizes = {lv.name: lv.size for lv in group.levels}
    whole = {name for name, _ in group.whole_levels}
    if level not in sizes or level in whole or sizes[level] < 2:
        return None
    others = group.size // sizes[level]
    step = max(1, group.multiple_of // others if others < group.multiple_of else 1)
    count = max(-(-group.min_units // others), int(sizes[level] * fraction))
    if str(group.kind) != "attention":  # the planner refuses single-unit axes (resolve)
        count = max(count, 2)
    count = -(-count // step) * step
    if count >= sizes[level] or count < 1:
        return None
    kept = {lv.name: list(range(lv.size)) for lv in group.levels}
    kept[level] = sorted(rng.sample(range(sizes[level]), count))
    return units_of(kept, group)


def width_plan(analysis, kinds, rng) -> dict[str, list[int]]:
    keep = {}
    for group in analysis.prunable:
        if str(group.kind) not in kinds:
            continue
        level = group.levels[0].name
        units = half(group, level, rng)
        if units is not None:
            keep[group.id] = units
    return _keep_comparisons(analysis, keep)


def _keep_comparisons(analysis, keep: dict[str, list[int]]) -> dict[str, list[int]]:
    """One unit more where the cut would change a width comparison the model's
    code makes (the analysis names them, as a planner honours them)."""
    for pair in analysis.compared:
        for group in pair.groups:
            units = keep.get(group)
            counts = {gid: len(kept) for gid, kept in keep.items()}
            if units is None or not pair.flipped(counts):
                continue
            spare = [u for u in range(analysis.group(group).size) if u not in units]
            if spare and not pair.flipped({**counts, group: len(units) + 1}):
                keep[group] = sorted([*units, spare[0]])
    return keep


def attention_plan(analysis, level: str, rng) -> dict[str, list[int]]:
    """Three quarters of the KV groups (4 heads keep 3: a count that does not
    divide the hidden size, as configs require), half the queries per group."""
    fraction = 0.75 if level == "kv" else 0.5
    keep = {}
    groups = analysis.by_kind("attention")
    if groups and all(g.frozen for g in groups):
        raise Frozen(f"every attention group is frozen: {groups[0].frozen}")
    for group in groups:
        if group.frozen:
            continue
        units = half(group, level, rng, fraction)
        if units is not None:
            keep[group.id] = units
    return keep
