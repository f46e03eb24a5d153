"""Random plans and padded inputs shared by the surgery tests."""

from __future__ import annotations

import inspect
import random

import torch

from surgeon.analyzers import Analysis, Group
from surgeon.analyzers.example_inputs import example_inputs
from surgeon.rewriters.resolve import units_of


def random_units(group: Group, rng: random.Random, fraction: float = 0.5) -> list[int]:
    """A random grid over the group's levels keeping about ``fraction`` of each."""
    kept = {}
    for level in group.levels:
        count = max(1, round(level.size * fraction))
        if len(group.levels) == 1:
            count = max(count, group.min_units)
        kept[level.name] = tuple(sorted(rng.sample(range(level.size), count)))
    return units_of(kept, group)


def random_plan(analysis: Analysis, seed: int, kinds=None) -> dict[str, list[int]]:
    rng = random.Random(seed)
    return {
        g.id: random_units(g, rng)
        for g in analysis.prunable
        if g.kind != "hidden" and (kinds is None or g.kind in kinds)
    }


def padded_inputs(model, batch: int = 3, length: int = 7) -> tuple[tuple, dict]:
    """Batch > 1 with left padding where the model takes an attention mask."""
    args, kwargs = example_inputs(model)
    generator = torch.Generator().manual_seed(1)
    for name in ("input_ids", "decoder_input_ids"):
        if name in kwargs:
            kwargs[name] = torch.randint(4, 100, (batch, length), generator=generator)
    if "pixel_values" in kwargs:
        kwargs["pixel_values"] = torch.randn(
            batch, *kwargs["pixel_values"].shape[1:], generator=generator
        )
    if "input_ids" in kwargs and "attention_mask" in inspect.signature(model.forward).parameters:
        mask = torch.ones(batch, length, dtype=torch.long)
        mask[1, :3] = 0
        kwargs["attention_mask"] = mask
    return args, kwargs
