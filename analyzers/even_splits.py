"""Pieces of a split whose boundaries are recomputed at run time.

``chunk(n)`` and ``split(size)`` cut the total into equal pieces when the model
runs, so a cut is exact only if every piece loses the same units at the same
positions. JetMoE chunks its fused key/value projection into keys and values:
both pieces are heads x 16, though the keys' 16 is RoPE's two halves (8 + 8)
and the values' one run of 16. What must match is the arrangement of units, with
everything no cut can touch (head widths, positions) counted by its size only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .axes import AxisAlgebra, Fact, FactKind

__all__ = ["freeze_uneven_splits"]


def freeze_uneven_splits(
    algebra: AxisAlgebra,
    even_splits: Iterable[tuple[str, list[int]]],
    is_unit: Callable[[int], bool],
) -> set[int]:
    """Freeze the unit leaves of every even split whose pieces are arranged
    differently; return the leaves frozen."""
    frozen: set[int] = set()
    for where, pieces in even_splits:
        if len({_arrangement(algebra, piece, is_unit) for piece in pieces}) <= 1:
            continue
        reason = (
            f"{where}: splits into equal pieces at run time, and its pieces "
            "belong to different groups"
        )
        for piece in pieces:
            for leaf in algebra.leaves(piece):
                if is_unit(leaf):
                    algebra.add_fact(leaf, Fact(FactKind.FROZEN, reason))
                    frozen.add(leaf)
    return frozen


def _arrangement(algebra: AxisAlgebra, atom: int, is_unit: Callable[[int], bool]):
    """The units under ``atom`` in their structure; a part without units is its size."""
    leaves = algebra.leaves(atom)
    if not any(is_unit(leaf) for leaf in leaves):
        return -algebra.size(atom)
    structure = algebra.structure(atom)
    if structure is None:
        return algebra.find(atom)
    parts = tuple(_arrangement(algebra, part, is_unit) for part in structure.parts)
    return (structure.kind.value, parts)
