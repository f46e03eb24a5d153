"""Widths that Mamba-2 style mixers read when they split their fused ``in_proj``.

The mixer projects to ``[gate | x, B, C | dt]`` and splits by attributes
computed at build time: ``intermediate_size`` (heads x head_dim),
``conv_dim`` (x, B and C), ``num_heads``, ``n_groups * ssm_state_size``; it
reshapes by ``head_dim`` and its gated norm by ``group_size``
(``intermediate_size // n_groups``). The analysis describes the mixer as one
channels group whose levels are the B/C groups, the heads per group, the
head_dim and the state (Mamba-2, Nemotron-H), or heads x head_dim with the state
in a group of its own when one B/C group is shared by every head (Bamba,
Falcon-H1). Each of those attributes is a size the layouts give:

* counts (``num_heads``, ``n_groups``): the leading levels of a plain
  (unfused) member's product, heads x head_dim;
* ``head_dim``: the trailing level of that product, ``group_size`` any of its
  trailing products (the whole width when there is one B/C group); Zamba's
  ``mamba_head_dim`` likewise, its head count fixed (the group is the head_dim);
* ``intermediate_size``: a plain member's width, ``conv_dim`` a fused one's;
* ``ssm_state_size``: a level that only the fused members carry (B and C);
  with ``time_step_rank``, a one-level group that is a piece of a fused member
  (Zamba's per-head x_proj, a 3-d parameter, splits [dt | B | C] as Mamba's does).

Each attribute is updated where its value equals the old size (as everywhere in
:mod:`surgeon.rewriters.attributes`); two different new values for one old
value of one name are refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from math import prod

from surgeon.analyzers import GroupKind
from surgeon.errors import RewriteError

from .resolve import GroupCut

__all__ = ["delta_net_changes", "fused_width_changes", "state_space_changes"]

_COUNTS = ("num_heads", "n_groups")
_TRAILING = ("head_dim", "mamba_head_dim")
_GROUP_WIDTHS = ("group_size",)
_PLAIN_WIDTHS = ("intermediate_size", "group_size")
_FUSED_WIDTHS = ("conv_dim",)
_STATE = ("ssm_state_size",)
_PROJECTION_WIDTHS = ("key_dim", "value_dim")
# Mamba's x_proj output, split into [time_step_rank | ssm_state_size | ssm_state_size]
_PIECES = ("time_step_rank", "ssm_state_size")


def state_space_changes(
    cut: GroupCut, cuts: Sequence[GroupCut] = ()
) -> Iterator[tuple[int, int, tuple[str, ...]]]:
    """(old, new, names) for a channels group that a fused projection splits;
    nothing for any other group. Sorted by old size, so that no update feeds a
    later one (sizes only shrink). ``cuts``: every cut of the plan (a fused
    width that several groups share is updated once, to what all of them keep)."""
    group = cut.group
    if group.kind != GroupKind.CHANNELS or len(group.members) < 2:
        return
    plain = [m.layout for m in group.members if m.layout.kind != "concat"]
    fused = [m.layout for m in group.members if m.layout.kind == "concat"]
    if not fused:
        return
    kept = {level.name: cut.kept_size(level.name) for level in group.levels}

    def size(parts) -> tuple[int, int]:
        return prod(p.size for p in parts), prod(kept[p.level] for p in parts)

    changes: dict[str, dict[int, int]] = {}

    def add(names: tuple[str, ...], old: int, new: int) -> None:
        for name in names:
            seen = changes.setdefault(name, {})
            if seen.get(old, new) != new:
                raise RewriteError(
                    f"group {group.id}: the mixer's {name} of {old} is ambiguous "
                    f"(it becomes {seen[old]} or {new})"
                )
            seen[old] = new

    # the heads' width: the widest plain members (out_proj, the norm); a
    # narrower one (dt_bias: groups x heads) only counts heads
    widest = [x for x in plain if not any(x.levels() < y.levels() for y in plain)]
    for layout in widest:
        add(_PLAIN_WIDTHS, layout.size, len(layout.indices(cut.kept)))
        parts = layout.parts if layout.kind == "product" else ()
        if len(parts) >= 2 and parts[-1].kind == "unit":  # Zamba's heads are not cut
            add(_TRAILING, *size(parts[-1:]))
        if len(parts) < 2 or any(p.kind != "unit" for p in parts):
            continue
        for j in range(1, len(parts)):
            add(_COUNTS, *size(parts[:j]))
            add(_GROUP_WIDTHS, *size(parts[j:]))
    for old, new, names in fused_width_changes(cut, cuts):
        add(names, old, new)
    in_plain = set().union(*(layout.levels() for layout in plain))
    for level in group.levels:
        if level.name not in in_plain:
            add(_STATE, level.size, kept[level.name])
    if len(group.levels) == 1:  # one piece of a split projection (Zamba's x_proj)
        (level,) = group.levels
        if any(_is_piece(layout, level.name) for layout in fused):
            add(_PIECES, level.size, kept[level.name])
    for old, new, name in sorted(
        (old, new, name) for name, seen in changes.items() for old, new in seen.items()
    ):
        if old != new:
            yield old, new, (name,)


def _is_piece(layout, level: str) -> bool:
    """Whether ``level`` is a whole piece of the concatenation ``layout``."""
    return any(part.kind == "unit" and part.level == level for part in layout.parts)


def delta_net_changes(
    cut: GroupCut, cuts: Sequence[GroupCut] = ()
) -> Iterator[tuple[int, int, tuple[str, ...]]]:
    """A gated delta net (OLMo-Hybrid's linear attention) splits its conv'd
    q, k, v by ``key_dim`` and ``value_dim``, each a projection's width (heads x
    their own head width), and convolves ``conv_dim`` channels. Only for an
    attention group whose projections a convolution fuses (a 3-D weight over
    their concatenation): ``key_dim`` is also LeViT's per-head width."""
    if not any(m.layout.kind == "concat" and len(m.shape) == 3 for m in cut.group.members):
        return
    changes: dict[int, int] = {}
    for member in cut.group.members:
        if member.layout.kind != "concat":
            old, new = member.layout.size, len(member.layout.indices(cut.kept))
            if changes.setdefault(old, new) != new:
                raise RewriteError(
                    f"group {cut.group.id}: a width of {old} is ambiguous "
                    f"(it becomes {changes[old]} or {new})"
                )
    for old, new in sorted(changes.items()):
        if old != new:
            yield old, new, _PROJECTION_WIDTHS
    yield from fused_width_changes(cut, cuts)


def fused_width_changes(
    cut: GroupCut, cuts: Sequence[GroupCut] = ()
) -> Iterator[tuple[int, int, tuple[str, ...]]]:
    """``conv_dim``: the width of a fused member (the depthwise conv over x, B
    and C, or over a gated delta net's q, k and v), as every cut leaves it."""
    for member in cut.group.members:
        if member.layout.kind == "concat":
            fused_width = _fused_width(member, cut, cuts)
            if fused_width is not None:
                yield member.layout.size, fused_width, _FUSED_WIDTHS


def _fused_width(member, cut: GroupCut, cuts: Sequence[GroupCut]) -> int | None:
    """What a fused dimension keeps under every cut that shares it (x and B/C
    in conv1d are two groups when one B/C group serves every head); None on
    every cut but the first of them, so the width is updated once."""
    sharing = [
        (c, m)
        for c in cuts
        for m in c.group.members
        if m.param == member.param and m.dim == member.dim
    ] or [(cut, member)]
    first = min(sharing, key=lambda pair: pair[0].group.id)[0]
    if first.group.id != cut.group.id:
        return None
    removed = set()
    for other, m in sharing:
        removed |= set(range(m.layout.size)) - set(m.layout.indices(other.kept))
    return member.layout.size - len(removed)
