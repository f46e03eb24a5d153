"""Widths a module's code compares to choose its structure, and which groups
set them: a planner keeps them apart (or equal) before anything is cut.

Hiera's ``HieraLayer`` projects and pools only where ``hidden_size !=
hidden_size_output``. A cut that makes the two equal (128 halved to the 64
before it) runs another code path than the original's, so ``apply`` refuses it
(:func:`surgeon.rewriters.attribute_table.check_compared`). The graph cannot
show the test (it is Python on attributes), so the table names it, with a
parameter each width sizes along its first axis, and :func:`find_compared`
turns it into the groups a plan must keep apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from torch import nn

from .groups import Group

__all__ = ["COMPARED", "ComparedWidths", "find_compared"]

# class name -> ((attribute, parameter it sizes), (attribute, parameter it sizes)) pairs
COMPARED: dict[str, tuple[tuple[tuple[str, str], tuple[str, str]], ...]] = {
    # projects (and pools) only where hidden_size != hidden_size_output
    "HieraLayer": (
        (
            ("hidden_size", "layernorm_before.weight"),
            ("hidden_size_output", "layernorm_after.weight"),
        ),
    ),
}


@dataclass(frozen=True)
class ComparedWidths:
    """Two widths ``module`` compares, each the unit count of a group (one
    channel a unit) or fixed (group None)."""

    module: str
    names: tuple[str, str]
    groups: tuple[str | None, str | None]
    widths: tuple[int, int]

    def kept(self, counts: Mapping[str, int]) -> tuple[int, int]:
        """Both widths when each group keeps ``counts[group]`` units (all where
        it is not named)."""
        a, b = (
            width if group is None else counts.get(group, width)
            for group, width in zip(self.groups, self.widths, strict=True)
        )
        return a, b

    def flipped(self, counts: Mapping[str, int]) -> bool:
        """Whether the comparison would come out otherwise than the original's."""
        a, b = self.kept(counts)
        return (a == b) != (self.widths[0] == self.widths[1])


def find_compared(model: nn.Module, groups: Iterable[Group]) -> tuple[ComparedWidths, ...]:
    """Every :data:`COMPARED` pair in ``model``, with the prunable groups
    that set its widths (a group's member on the named parameter's first axis,
    one unit per channel)."""
    owner: dict[str, Group] = {}
    for group in groups:
        if group.frozen is None:
            for m in group.members:
                if m.dim == 0 and m.layout.size == group.size:
                    owner[m.param] = group
    found = []
    for path, module in model.named_modules():
        for cls in type(module).__mro__:
            for pair in COMPARED.get(cls.__name__, ()):
                sides = []
                for attribute, param in pair:
                    group = owner.get(f"{path}.{param}" if path else param)
                    width = int(getattr(module, attribute))
                    if group is not None and group.size != width:
                        group = None  # not one channel a unit: leave it to apply's check
                    sides.append((group.id if group else None, width))
                (ga, wa), (gb, wb) = sides
                names = (pair[0][0], pair[1][0])
                found.append(ComparedWidths(path, names, (ga, gb), (wa, wb)))
    return tuple(found)
