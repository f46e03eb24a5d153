"""From per-index scores of one parameter dimension to per-unit scores of a group.

A member's layout says which level digits each index carries (``q_proj`` row
``r`` belongs to KV group ``r // 32`` and query ``(r // 8) % 4``; ``k_proj`` rows
carry only a KV digit). Scores of indices are summed per combination of the
digits the member has, then broadcast over the levels it lacks, so a ``k_proj``
row counts for every query head of its KV group.
"""

from __future__ import annotations

import torch

from surgeon.analyzers.groups import Group, Layout

__all__ = ["level_digits", "unit_scores"]


def level_digits(layout: Layout) -> dict[str, torch.Tensor]:
    """For every level in ``layout``, the level digit of each index (-1: none)."""
    if layout.kind == "unit":
        return {layout.level: torch.arange(layout.size)}
    if layout.kind == "fixed":
        return {}
    parts = [level_digits(p) for p in layout.parts]
    levels = {name for part in parts for name in part}
    if layout.kind == "concat":
        return {
            name: torch.cat(
                [
                    part.get(name, torch.full((p.size,), -1, dtype=torch.long))
                    for part, p in zip(parts, layout.parts, strict=True)
                ]
            )
            for name in levels
        }
    index = torch.arange(layout.size)
    out = {}
    stride = layout.size
    for part, p in zip(parts, layout.parts, strict=True):
        stride //= p.size
        position = (index // stride) % p.size
        for name, digits in part.items():
            out[name] = digits[position]
    return out


def unit_scores(group: Group, member_scores: dict[tuple[str, int], torch.Tensor]) -> torch.Tensor:
    """Sum per-index scores of the given members into one score per unit
    (row-major over the group's levels). Members not in ``member_scores`` add 0."""
    sizes = [level.size for level in group.levels]
    names = [level.name for level in group.levels]
    total = torch.zeros(sizes, dtype=torch.float64)
    for member in group.members:
        scores = member_scores.get((member.param, member.dim))
        if scores is None:
            continue
        scores = scores.detach().double().cpu()  # members may live on other devices
        digits = level_digits(member.layout)
        present = [n for n in names if n in digits]
        if not present:
            continue
        valid = torch.stack([digits[n] >= 0 for n in present]).all(0)
        partial_sizes = [sizes[names.index(n)] for n in present]
        flat = torch.zeros(partial_sizes, dtype=torch.float64).view(-1)
        key = torch.zeros(int(valid.sum()), dtype=torch.long)
        for n, size in zip(present, partial_sizes, strict=True):
            key = key * size + digits[n][valid]
        flat.index_add_(0, key, scores[valid])
        shape = [sizes[i] if names[i] in present else 1 for i in range(len(names))]
        total += flat.view(shape)
    return total.reshape(-1)
