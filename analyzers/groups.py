"""Plain data produced by the analysis: groups, their members and index layouts,
and the repeated blocks that are depth-pruning candidates. All of it is frozen
and JSON-serialisable."""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import prod
from typing import Any

__all__ = ["Block", "Group", "GroupKind", "Layout", "Level", "Member"]


class GroupKind(str, enum.Enum):
    """What a group's units are. Compares equal to its string value."""

    MLP = "mlp"  # inner channels of a feed-forward block
    ATTENTION = "attention"  # query heads, grouped by KV head
    HIDDEN = "hidden"  # the residual stream's width, across the whole model
    EXPERTS = "experts"  # whole experts of a fused MoE layer (with the router rows)
    EXPERT_MLP = "expert_mlp"  # inner channels shared by all experts of a layer
    CHANNELS = "channels"  # convolution / generic channels
    VOCAB = "vocab"  # embedding rows looked up by token id
    INPUT = "input"  # an axis of a model input
    OUTPUT = "output"  # an axis of a model output

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Layout:
    """How the indices of one parameter dimension map onto a group's units.

    ``unit`` leaves are indexed by one of the group's levels; ``fixed`` leaves
    (a head's ``head_dim``, another group's axis) are kept whole. ``product`` is
    row-major, ``concat`` stacks segments (a fused ``qkv`` or ``gate_up``).
    """

    kind: str  # "unit" | "fixed" | "product" | "concat"
    size: int
    level: str | None = None
    parts: tuple[Layout, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("unit", "fixed", "product", "concat"):
            raise ValueError(f"unknown layout kind {self.kind!r}")

    def indices(self, kept: Mapping[str, Sequence[int]]) -> list[int]:
        """Indices of this dimension that survive when each level keeps ``kept[level]``."""
        if self.kind == "unit":
            return list(kept.get(self.level, range(self.size)))
        if self.kind == "fixed":
            return list(range(self.size))
        if self.kind == "concat":
            out, offset = [], 0
            for part in self.parts:
                out.extend(offset + i for i in part.indices(kept))
                offset += part.size
            return out
        strides = [prod(p.size for p in self.parts[i + 1 :]) for i in range(len(self.parts))]
        per_part = [part.indices(kept) for part in self.parts]
        return [
            sum(i * s for i, s in zip(combo, strides, strict=True))
            for combo in itertools.product(*per_part)
        ]

    def levels(self) -> set[str]:
        if self.kind == "unit":
            return {self.level}
        return set().union(*(p.levels() for p in self.parts)) if self.parts else set()

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "unit":
            return {"unit": self.level, "size": self.size}
        if self.kind == "fixed":
            return {"fixed": self.size}
        return {self.kind: [p.to_dict() for p in self.parts]}

    def __str__(self) -> str:
        if self.kind == "unit":
            return f"{self.level}({self.size})"
        if self.kind == "fixed":
            return str(self.size)
        joiner = " x " if self.kind == "product" else " | "
        text = joiner.join(str(p) for p in self.parts)
        return text if self.kind == "product" else f"[{text}]"


@dataclass(frozen=True)
class Member:
    """One parameter dimension that a group's units index."""

    param: str
    dim: int
    layout: Layout
    module: str
    shape: tuple[int, ...]
    aliases: tuple[str, ...] = ()  # other names of a tied parameter
    buffer: bool = False  # a buffer (BatchNorm running statistics), not a parameter

    @property
    def numel(self) -> int:
        return prod(self.shape)

    def to_dict(self) -> dict[str, Any]:
        out = {"param": self.param, "dim": self.dim, "shape": list(self.shape)}
        out["layout"] = self.layout.to_dict()
        if self.aliases:
            out["aliases"] = list(self.aliases)
        if self.buffer:
            out["buffer"] = True
        return out


@dataclass(frozen=True)
class Level:
    """One axis of a group's unit structure (e.g. KV heads, or queries per KV head)."""

    name: str
    size: int


@dataclass(frozen=True)
class Group:
    """Slices of parameters that must be removed together.

    ``size`` is the number of prunable units: the product of the level sizes
    (units are numbered row-major over the levels). ``frozen`` is ``None`` or
    the reason nothing may be removed. ``mask_equivalent`` is False when
    removing units changes more than zeroing them would (a norm computing
    statistics over the axis); ``notes`` say why, and what masking must use.
    """

    id: str
    kind: GroupKind
    levels: tuple[Level, ...]
    members: tuple[Member, ...]
    frozen: str | None = None
    mask_equivalent: bool = True
    notes: tuple[str, ...] = ()
    min_units: int = 1
    head_dim: int | None = None
    blocks: tuple[str, ...] = field(default=())
    routers: tuple[str, ...] = ()  # params whose products give logits a softmax/top-k selects
    multiple_of: int = 1  # kernels need the kept units in multiples of this
    # (level, why): levels whose size the model's code writes beside a -1; kept whole
    whole_levels: tuple[tuple[str, str], ...] = ()
    # modules whose ops carry the group's axes (owners of members or not): where
    # a cut looks for attributes holding the old width
    touching: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError(f"group {self.id} has no members")
        if self.size < 1:
            raise ValueError(f"group {self.id} has no units")

    @property
    def size(self) -> int:
        return prod(level.size for level in self.levels)

    @property
    def kv_heads(self) -> int | None:
        return self._level_size("kv") if self.kind == GroupKind.ATTENTION else None

    @property
    def q_per_kv(self) -> int | None:
        return self._level_size("q") if self.kind == GroupKind.ATTENTION else None

    def _level_size(self, name: str) -> int:
        return next((level.size for level in self.levels if level.name == name), 1)

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.module for m in self.members))

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.param for m in self.members))

    @property
    def units_text(self) -> str:
        """The unit structure, as every table and picture shows it: ``2 kv x 4 q x
        32 hd``, ``688``, ``e(8) x c(4)``."""
        if self.kind == GroupKind.ATTENTION:
            return f"{self.kv_heads} kv x {self.q_per_kv} q x {self.head_dim} hd"
        if len(self.levels) == 1:
            return str(self.size)
        return " x ".join(f"{level.name}({level.size})" for level in self.levels)

    @property
    def params_covered(self) -> int:
        """Elements of the parameters whose slices this group's units remove."""
        seen = {m.param: m.numel for m in self.members if not m.buffer}
        return sum(seen.values())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind.value,
            "size": self.size,
            "levels": [{"name": lv.name, "size": lv.size} for lv in self.levels],
            "frozen": self.frozen,
            "mask_equivalent": self.mask_equivalent,
            "notes": list(self.notes),
            "min_units": self.min_units,
            "params_covered": self.params_covered,
            "members": [m.to_dict() for m in self.members],
        }
        if self.whole_levels:
            out["whole_levels"] = dict(self.whole_levels)
        if self.kind == GroupKind.ATTENTION:
            out.update(kv_heads=self.kv_heads, q_per_kv=self.q_per_kv, head_dim=self.head_dim)
        return out

    def __str__(self) -> str:
        structure = " x ".join(f"{lv.name}={lv.size}" for lv in self.levels)
        state = f" FROZEN: {self.frozen}" if self.frozen else ""
        return f"{self.id} [{self.kind}] {structure}{state}"


@dataclass(frozen=True)
class Block:
    """A repeated block (a decoder layer): a candidate for depth pruning."""

    name: str
    container: str
    index: int
    residual: bool
    removable: bool
    entry: str | None = None  # graph node carrying the residual stream in
    exit: str | None = None  # graph node carrying it out
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "container": self.container,
            "index": self.index,
            "residual": self.residual,
            "removable": self.removable,
            "entry": self.entry,
            "exit": self.exit,
            "reason": self.reason,
        }
