"""Pruning plans: plain data saying which units of which groups to keep, and
which whole blocks to remove. Plans serialise to JSON so they can be reviewed,
saved and replayed on a fresh copy of the model."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from surgeon.errors import PlanError

__all__ = ["Plan"]

PLAN_VERSION = 1


@dataclass(frozen=True)
class Plan:
    """``keep[group_id]`` lists the unit indices to keep; groups not named keep
    everything. ``remove_blocks`` names whole repeated blocks (decoder layers).
    ``sizes`` (group id -> units) records the model a plan was made for, so
    replaying it on a different model is refused instead of half-applied."""

    keep: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    remove_blocks: tuple[str, ...] = ()
    sizes: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def for_analysis(cls, analysis, keep, remove_blocks=()) -> Plan:
        """A plan that remembers the group sizes of the analysed model."""
        return cls(keep, tuple(remove_blocks), {g.id: g.size for g in analysis.groups})

    def __post_init__(self) -> None:
        keep = {}
        for group_id, units in dict(self.keep).items():
            if not isinstance(group_id, str):
                raise PlanError(f"plan keys must be group ids (str), not {group_id!r}")
            if isinstance(units, (str, bytes)) or not isinstance(units, Sequence):
                raise PlanError(f"plan['{group_id}'] must be a list of unit indices, not {units!r}")
            if not all(isinstance(u, int) and not isinstance(u, bool) for u in units):
                raise PlanError(f"plan['{group_id}'] holds non-integer unit indices: {list(units)}")
            keep[group_id] = tuple(units)
        object.__setattr__(self, "keep", keep)
        object.__setattr__(self, "remove_blocks", tuple(self.remove_blocks))
        object.__setattr__(self, "sizes", {str(k): int(v) for k, v in dict(self.sizes).items()})

    @classmethod
    def coerce(cls, plan: Plan | Mapping[str, Sequence[int]]) -> Plan:
        """Accept a :class:`Plan` or the plain dict ``{group_id: kept_unit_indices}``."""
        if isinstance(plan, Plan):
            return plan
        if isinstance(plan, Mapping):
            return cls(keep=dict(plan))
        raise PlanError(
            f"a plan is a surgeon.Plan or a dict of group id -> kept units, "
            f"not {type(plan).__name__}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": PLAN_VERSION,
            "keep": {gid: list(units) for gid, units in self.keep.items()},
            "remove_blocks": list(self.remove_blocks),
            "sizes": dict(self.sizes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        version = data.get("format_version")
        if version != PLAN_VERSION:
            raise PlanError(
                f"unsupported plan format_version {version!r} (expected {PLAN_VERSION})"
            )
        unknown = set(data) - {"format_version", "keep", "remove_blocks", "sizes"}
        if unknown:
            raise PlanError(f"unknown plan fields: {', '.join(sorted(unknown))}")
        return cls(
            keep=data.get("keep", {}),
            remove_blocks=tuple(data.get("remove_blocks", ())),
            sizes=data.get("sizes", {}),
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))
