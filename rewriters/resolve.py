"""Check a plan against an analysis and turn unit indices into per-level cuts.

Nothing is changed here: every error a plan can have is found before any
tensor is touched.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from math import prod

from surgeon.analyzers import Analysis, Block, Group
from surgeon.errors import PlanError
from surgeon.plan.plan import Plan

__all__ = ["GroupCut", "ResolvedPlan", "kept_indices", "resolve"]


@dataclass(frozen=True)
class GroupCut:
    """The units one group keeps, per level (e.g. ``{"kv": (0, 1), "q": (0, 2)}``)."""

    group: Group
    kept: dict[str, tuple[int, ...]]

    @property
    def removes_anything(self) -> bool:
        return any(len(self.kept[lv.name]) < lv.size for lv in self.group.levels)

    def kept_size(self, level: str) -> int:
        return len(self.kept[level])


@dataclass(frozen=True)
class ResolvedPlan:
    cuts: tuple[GroupCut, ...]
    blocks: tuple[Block, ...]


def resolve(plan: Plan, analysis: Analysis) -> ResolvedPlan:
    known = {g.id: g for g in analysis.groups}
    _check_same_model(plan, known)
    cuts = []
    for group_id, units in plan.keep.items():
        group = known.get(group_id)
        if group is None:
            raise PlanError(
                f"the plan names group '{group_id}', which this model does not have; "
                f"its groups are: {', '.join(known)}"
            )
        cuts.append(_cut(group, units))
    blocks = _blocks(plan.remove_blocks, analysis)
    return ResolvedPlan(tuple(c for c in cuts if c.removes_anything), blocks)


def _check_same_model(plan: Plan, known: dict[str, Group]) -> None:
    if not plan.sizes:
        return
    differing = [
        f"'{gid}' has {known[gid].size if gid in known else 'no such group'} (plan made for {size})"
        for gid, size in plan.sizes.items()
        if gid not in known or known[gid].size != size
    ]
    missing = sorted(set(known) - set(plan.sizes))
    if differing or missing:
        details = "; ".join(differing[:3] + [f"'{gid}' is not in the plan" for gid in missing[:3]])
        raise PlanError(f"this plan was made for another model: {details}")


def _cut(group: Group, units: tuple[int, ...]) -> GroupCut:
    where = f"plan['{group.id}']"
    if group.frozen is not None and len(set(units)) != group.size:
        raise PlanError(f"{where}: group '{group.id}' is frozen ({group.frozen})")
    bad = [u for u in units if not 0 <= u < group.size]
    if bad:
        raise PlanError(f"{where}: unit indices {bad} are out of range 0..{group.size - 1}")
    if len(set(units)) != len(units):
        duplicates = sorted({u for u in units if units.count(u) > 1})
        raise PlanError(f"{where}: unit indices {duplicates} are listed more than once")
    if len(units) == 1 and group.size > 1 and group.kind != "attention" and group.min_units <= 1:
        raise PlanError(
            f"{where}: keeps a single unit; an axis of size 1 broadcasts silently against "
            "any other axis, so such a cut cannot be checked: keep at least 2"
        )
    if len(units) < group.min_units:
        raise PlanError(
            f"{where}: keeps {len(units)} units but at least {group.min_units} must stay "
            f"({'; '.join(group.notes) or 'the group has no units left'})"
        )
    if group.multiple_of > 1 and len(units) % group.multiple_of and len(units) != group.size:
        raise PlanError(
            f"{where}: keeps {len(units)} units, but kernels reading this axis need a multiple "
            f"of {group.multiple_of} (grouped_mm rows of 16 bytes)"
        )
    sizes = [level.size for level in group.levels]
    digits = [_digits(u, sizes) for u in units]
    kept = {
        level.name: tuple(sorted({d[i] for d in digits})) for i, level in enumerate(group.levels)
    }
    if len(units) != prod(len(k) for k in kept.values()):
        structure = " x ".join(f"{lv.name}({lv.size})" for lv in group.levels)
        raise PlanError(
            f"{where}: the kept units must form a full grid over the levels {structure} "
            f"(for attention: keep the same query heads in every kept KV group); "
            f"the units {sorted(units)} would keep {kept}"
        )
    for level, why in group.whole_levels:
        size = next(lv.size for lv in group.levels if lv.name == level)
        if len(kept[level]) < size:
            raise PlanError(
                f"{where}: removes units of level '{level}', but {why}; "
                f"keep all {size} units of '{level}'"
            )
    return GroupCut(group, kept)


def _digits(unit: int, sizes: list[int]) -> tuple[int, ...]:
    digits = []
    for size in reversed(sizes):
        digits.append(unit % size)
        unit //= size
    return tuple(reversed(digits))


def units_of(kept: dict[str, tuple[int, ...]], group: Group) -> list[int]:
    """The unit indices of a per-level cut (the inverse of ``_digits``)."""
    sizes = [level.size for level in group.levels]
    strides = [prod(sizes[i + 1 :]) for i in range(len(sizes))]
    per_level = [kept[level.name] for level in group.levels]
    return [
        sum(d * s for d, s in zip(c, strides, strict=True)) for c in itertools.product(*per_level)
    ]


def _blocks(names: tuple[str, ...], analysis: Analysis) -> tuple[Block, ...]:
    by_name = {b.name: b for b in analysis.blocks}
    chosen = []
    for name in dict.fromkeys(names):
        block = by_name.get(name)
        if block is None:
            raise PlanError(
                f"the plan removes block '{name}', which is not a repeated block of this model; "
                f"blocks are: {', '.join(by_name) or 'none'}"
            )
        if not block.removable:
            raise PlanError(f"block '{name}' cannot be removed: {block.reason}")
        chosen.append(block)
    for container in {b.container for b in chosen}:
        if len([b for b in chosen if b.container == container]) == len(
            [b for b in analysis.blocks if b.container == container]
        ):
            raise PlanError(f"the plan removes every block of '{container}'; keep at least one")
    if len(names) != len(set(names)):
        raise PlanError("the plan lists a block to remove more than once")
    return tuple(chosen)


def kept_indices(resolved: ResolvedPlan) -> dict[str, dict[int, list[int]]]:
    """``param -> {dim: kept indices}`` over every cut group (shared by ``apply`` and
    streaming surgery, so both cut exactly the same slices). A dim shared by
    several groups (a ``cat`` of two branches) keeps what all of them keep: each
    group's layout keeps the other groups' segments whole."""
    slices: dict[str, dict[int, list[int]]] = {}
    for cut in resolved.cuts:
        for member in cut.group.members:
            indices = member.layout.indices(cut.kept)
            if len(indices) == member.shape[member.dim]:
                continue
            dims = slices.setdefault(member.param, {})
            previous = dims.get(member.dim)
            dims[member.dim] = indices if previous is None else sorted(set(previous) & set(indices))
    return slices
