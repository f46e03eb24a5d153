"""What step ``n`` of a run trains on and at which learning rate: pure
functions of the options and the step, so a resumed run continues exactly
where an uninterrupted one would be."""

from __future__ import annotations

import math

import torch

from surgeon.heal.options import HealOptions

__all__ = ["DataOrder", "learning_rate"]


def learning_rate(options: HealOptions, step: int, steps: int) -> float:
    """Linear warm-up over ``options.warmup`` of the steps, then cosine or linear
    decay to ``options.min_lr`` of the peak (or constant)."""
    peak = options.peak_lr
    warm = round(options.warmup * steps)
    if step < warm:
        return peak * (step + 1) / warm
    if options.schedule == "constant" or steps <= warm + 1:
        return peak
    done = (step - warm) / (steps - warm - 1)
    floor = peak * options.min_lr
    if options.schedule == "linear":
        return peak - (peak - floor) * done
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * done))


class DataOrder:
    """Rows of the training data for each optimizer step: every epoch visits
    each row once in an order drawn from ``seed`` and the epoch number."""

    def __init__(self, rows: int, batch: int, seed: int) -> None:
        self.rows, self.batch, self.seed = rows, batch, seed
        self._epochs: dict[int, torch.Tensor] = {}

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch not in self._epochs:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epochs = {epoch: torch.randperm(self.rows, generator=generator)}
        return self._epochs[epoch]

    def step(self, step: int) -> torch.Tensor:
        """The ``batch`` row indices of optimizer step ``step``."""
        first = step * self.batch
        positions = torch.arange(first, first + self.batch)
        epochs = positions // self.rows
        picked = torch.empty(self.batch, dtype=torch.long)
        for epoch in epochs.unique().tolist():
            mask = epochs == epoch
            picked[mask] = self._order(epoch)[positions[mask] % self.rows]
        return picked
