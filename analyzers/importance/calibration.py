"""Calibration: run samples through the model and collect what criteria need.

Hooks on every ``nn.Linear`` collect per-input-feature statistics (sum, sum of
squares, sum of absolute values, token count) and, when asked, the input Gram
matrix ``X^T X`` for least-squares refits. Hooks on repeated blocks collect how
much each block changes the residual stream (ShortGPT's block influence). With
``gradients`` the calibration loss is back-propagated and gradients summed, for
first-order Taylor scores. The model's own devices are used as they are, so a
model dispatched across devices by accelerate (``device_map``) works unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from surgeon.errors import InputError

__all__ = ["Statistics", "calibrate", "token_batches"]


@dataclass
class FeatureStats:
    """Per-input-feature statistics of one linear layer, accumulated on CPU in float64."""

    count: int = 0
    total: torch.Tensor | None = None
    squares: torch.Tensor | None = None
    absolute: torch.Tensor | None = None
    gram: torch.Tensor | None = None

    def add(self, x: torch.Tensor, gram: bool) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).to("cpu", torch.float64)
        if self.total is None:
            width = x.shape[-1]
            self.total, self.squares, self.absolute = (
                torch.zeros(width, dtype=torch.float64) for _ in range(3)
            )
            if gram:
                self.gram = torch.zeros(width, width, dtype=torch.float64)
        self.count += x.shape[0]
        self.total += x.sum(0)
        self.squares += (x * x).sum(0)
        self.absolute += x.abs().sum(0)
        if self.gram is not None:
            self.gram += x.T @ x

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


def token_batches(
    calib: Any,
    tokenizer: Any = None,
    samples: int = 64,
    length: int = 256,
    batch_size: int = 8,
) -> list[torch.Tensor]:
    """Calibration batches of token ids from a text file (with a tokenizer), a
    tensor of token ids ``[n, length]``, or an iterable of such batches."""
    if isinstance(calib, (str, Path)):
        if tokenizer is None:
            raise InputError("calibrating on a text file needs tokenizer=...")
        text = Path(calib).read_text(encoding="utf-8")
        ids = tokenizer(text, return_tensors="pt").input_ids[0]
        windows = ids.numel() // length
        if windows == 0:
            raise InputError(f"{calib} holds fewer than {length} tokens")
        calib = ids[: windows * length].view(windows, length)[:samples]
    if isinstance(calib, torch.Tensor):
        if calib.dim() != 2:
            raise InputError(f"calibration token ids must be [samples, length], not {calib.shape}")
        return list(calib.split(batch_size))
    if isinstance(calib, Iterable):
        return [b if isinstance(b, torch.Tensor) else b["input_ids"] for b in calib]
    raise InputError(f"calib must be a text file, a token tensor or batches, not {type(calib)}")


def calibrate(
    model: nn.Module,
    batches: Sequence[torch.Tensor],
    *,
    gradients: bool = False,
    gram_for: Iterable[str] = (),
    blocks: Iterable[str] = (),
    progress: bool = True,
) -> Statistics:
    """Run ``batches`` of token ids through ``model`` and collect statistics.
    ``gram_for`` names Linear modules whose input Gram matrix is wanted."""
    stats = Statistics()
    gram_for = set(gram_for)
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            feature = stats.inputs.setdefault(name, FeatureStats())
            handles.append(module.register_forward_pre_hook(_input_hook(feature, name in gram_for)))
    for name in blocks:
        handles.append(
            model.get_submodule(name).register_forward_hook(
                _influence_hook(stats, name), with_kwargs=True
            )
        )
    params = dict(model.named_parameters())
    try:
        for batch in tqdm(batches, desc="calibrating", disable=not progress, leave=False):
            device = next(iter(params.values())).device
            ids = batch.to(device)
            with torch.set_grad_enabled(gradients):
                out = model(input_ids=ids, labels=ids if gradients else None, use_cache=False)
            if gradients:
                out.loss.backward()
            stats.samples += ids.shape[0]
    finally:
        for handle in handles:
            handle.remove()
    if gradients:
        for name, param in params.items():
            if param.grad is not None:
                stats.gradients[name] = param.grad.detach().to("cpu", torch.float64)
                param.grad = None
    for name in list(stats.block_influence):
        stats.block_influence[name] /= max(stats.block_calls.get(name, 1), 1)
    return stats


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
