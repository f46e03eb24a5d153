"""What a group's facts say about cutting it: the notes a report shows
(statistics, selections, sums over its axis), and the one case that freezes
it (units only selected among)."""

from __future__ import annotations

from .axes import Fact
from .groups import GroupKind

__all__ = ["notes_of", "only_selected", "summarise"]

_MAX_REASONS = 3


def notes_of(
    statistics: list[Fact], selects: list[Fact], summed: list[Fact], routed: bool
) -> list[str]:
    notes = []
    if statistics:
        places = [f.module or f.reason for f in statistics]
        notes.append(
            "removing units is not the same as masking them: statistics are computed over "
            f"this axis ({summarise(places)})"
        )
    if selects:
        places = [f.module or f.reason for f in selects]
        how = (
            "mask with -inf"
            if routed
            else "no weight produces its logits, so masking cannot prove a cut"
        )
        notes.append(f"softmax/top-k/max over this axis: {how} ({summarise(places)})")
    if summed:
        places = [f.module or f.reason for f in summed]
        notes.append(
            "summed over without a weight: zero-masking proves a cut only where the summed "
            f"values are zero at zero ({summarise(places)})"
        )
    return notes


def summarise(items: list[str]) -> str:
    unique = list(dict.fromkeys(items))
    text = "; ".join(unique[:_MAX_REASONS])
    if len(unique) > _MAX_REASONS:
        text += f"; and {len(unique) - _MAX_REASONS} more"
    return text


def only_selected(kind: GroupKind, members, selects: list[Fact], routed: bool) -> str | None:
    """Units no weight reads, only selected among (a router whose experts the
    coupling lost track of: PhiMoE's sparsemixer by value, Zaya's loop over the
    experts hit): a cut renumbers what the selection picks, so the group is
    frozen rather than called inexact or exact. A router whose experts were
    found forms an experts group, never one of these kinds."""
    if kind not in (GroupKind.MLP, GroupKind.CHANNELS) or not selects:
        return None
    if any(m.dim != 0 for m in members):
        return None
    what = "its units (a router's experts)" if routed else "its units"
    return (
        f"{selects[0].reason}: {what} are only selected among, never read by a weight; "
        "a cut would renumber what the selection picks"
    )
