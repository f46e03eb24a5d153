"""What calibration collects, and the hooks that collect it.

Statistics accumulate in float64 on the device the activations are on (one
transfer at the end instead of one per layer and batch) and move to CPU in
:meth:`Statistics.finish`, so statistics of a model spread over several
devices combine. :func:`recording` attaches the hooks to a chosen set of
modules, so the layer-by-layer mode can record one block at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["FeatureStats", "Statistics", "recording"]


@dataclass
class FeatureStats:
    """Per-input-feature statistics of one linear layer, accumulated in float64."""

    count: int = 0
    total: torch.Tensor | None = None
    squares: torch.Tensor | None = None
    absolute: torch.Tensor | None = None
    gram: torch.Tensor | None = None

    def add(self, x: torch.Tensor, gram: bool) -> None:
        x = x.detach().reshape(-1, x.shape[-1])
        if self.total is None:
            device = x.device if x.device.type not in ("mps", "meta") else torch.device("cpu")
            width = x.shape[-1]
            self.total, self.squares, self.absolute = (
                torch.zeros(width, dtype=torch.float64, device=device) for _ in range(3)
            )
            if gram:
                self.gram = torch.zeros(width, width, dtype=torch.float64, device=device)
        x = x.to(self.total.device, torch.float64)
        self.count += x.shape[0]
        self.total += x.sum(0)
        self.squares += (x * x).sum(0)
        self.absolute += x.abs().sum(0)
        if self.gram is not None:
            self.gram += x.T @ x

    def to_cpu(self) -> None:
        for name in ("total", "squares", "absolute", "gram"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.cpu())

    @property
    def mean(self) -> torch.Tensor:
        return self.total / max(self.count, 1)

    @property
    def variance(self) -> torch.Tensor:
        return (self.squares / max(self.count, 1) - self.mean**2).clamp_min(0)

    @property
    def norm(self) -> torch.Tensor:
        """The L2 norm of each feature over all calibration tokens."""
        return self.squares.sqrt()


@dataclass
class Statistics:
    inputs: dict[str, FeatureStats] = field(default_factory=dict)  # Linear module -> stats
    gradients: dict[str, torch.Tensor] = field(default_factory=dict)  # param -> summed grad
    block_influence: dict[str, float] = field(default_factory=dict)  # block -> 1 - mean cos
    block_calls: dict[str, int] = field(default_factory=dict)
    samples: int = 0

    def finish(self) -> Statistics:
        """Move everything to CPU and turn influence sums into means."""
        for feature in self.inputs.values():
            feature.to_cpu()
        for name, calls in self.block_calls.items():
            self.block_influence[name] /= max(calls, 1)
        self.block_calls = {name: 1 for name in self.block_calls}  # finish() is idempotent
        return self


@contextlib.contextmanager
def recording(
    stats: Statistics,
    modules: Mapping[str, nn.Module],
    gram_for: Iterable[str] = (),
    blocks: Iterable[str] = (),
) -> Iterator[None]:
    """Hook the ``nn.Linear`` layers among ``modules`` (qualified name -> module)
    for input statistics (with the Gram matrix for those in ``gram_for``), and
    the named ``blocks`` among them for block influence, while in the context."""
    gram_for = set(gram_for)
    handles = []
    try:
        for name, module in modules.items():
            if isinstance(module, nn.Linear):
                feature = stats.inputs.setdefault(name, FeatureStats())
                handles.append(
                    module.register_forward_pre_hook(_input_hook(feature, name in gram_for))
                )
        for name in blocks:
            if name in modules:
                handles.append(
                    modules[name].register_forward_hook(
                        _influence_hook(stats, name), with_kwargs=True
                    )
                )
        yield
    finally:
        for handle in handles:
            handle.remove()


def _input_hook(feature: FeatureStats, gram: bool):
    def hook(module, args):
        feature.add(args[0], gram)

    return hook


def _influence_hook(stats: Statistics, name: str):
    def hook(module, args, kwargs, output):
        hidden_in = args[0] if args else kwargs["hidden_states"]
        hidden_out = output if isinstance(output, torch.Tensor) else output[0]
        cos = torch.nn.functional.cosine_similarity(
            hidden_in.detach().float(), hidden_out.detach().float(), dim=-1
        )
        stats.block_influence[name] = stats.block_influence.get(name, 0.0) + float((1 - cos).mean())
        stats.block_calls[name] = stats.block_calls.get(name, 0) + 1

    return hook
