"""Calibration: run samples through the model and collect what criteria need.

Hooks on every ``nn.Linear`` collect per-input-feature statistics (sum, sum of
squares, sum of absolute values, token count) and, when asked, the input Gram
matrix ``X^T X`` for least-squares refits. Hooks on repeated blocks collect how
much each block changes the residual stream (ShortGPT's block influence). With
``gradients`` the calibration loss is back-propagated and gradients summed, for
first-order Taylor scores.

Two ways to run a model that does not fit one device:

- dispatched by accelerate (``dispatch_model``, ``from_pretrained(device_map=...)``,
  CPU or disk offload): the model runs as it is; inputs go to the execution
  device of its input embedding, statistics accumulate where the activations
  are and meet on CPU, and gradients of offloaded weights are caught as they
  are computed (:mod:`.devices`);
- ``layerwise=True``: one block at a time on ``device`` (:mod:`.layerwise`);
  forward statistics only.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from surgeon.errors import InputError
from surgeon.text import text_windows

from .criteria import CRITERIA
from .devices import input_device, offloaded_gradients
from .layerwise import calibrate_layerwise
from .statistics import FeatureStats, Statistics, recording

__all__ = ["FeatureStats", "Statistics", "calibrate", "check_loss", "token_batches"]


def check_loss(model: nn.Module, criterion: str) -> None:
    """A gradient criterion back-propagates the model's own loss; a base model
    (``BertModel``, ``CLIPTextModel``) computes none. Refuse before any work,
    saying what to use instead."""
    if CRITERIA[criterion].needs_gradients:
        _require_loss(model, f"criterion '{criterion}'")


def _require_loss(model: nn.Module, what: str) -> None:
    try:
        takes_labels = "labels" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        takes_labels = False
    if not takes_labels:
        forward_only = sorted(
            c.name for c in CRITERIA.values() if c.needs_calibration and not c.needs_gradients
        )
        raise InputError(
            f"{what} back-propagates the model's loss, but {type(model).__name__} computes "
            f"none (its forward takes no labels): use a forward-only criterion "
            f"({', '.join(forward_only)}) or 'magnitude' (no data), or prune the model with "
            "its head (such as ...ForCausalLM or ...ForMaskedLM)"
        )


def token_batches(
    calib: Any,
    tokenizer: Any = None,
    samples: int = 64,
    length: int = 256,
    batch_size: int = 8,
) -> list[torch.Tensor]:
    """Calibration batches of token ids from a text file (with a tokenizer), a
    tensor of token ids ``[n, length]``, a tokenizer's output (a
    ``BatchEncoding`` or dict with ``input_ids``), or an iterable of such
    batches."""
    if isinstance(calib, (str, Path)):
        calib = text_windows(calib, tokenizer, length, samples)
    if isinstance(calib, Mapping):
        calib = _token_ids(calib)
    if isinstance(calib, torch.Tensor):
        if calib.dim() != 2:
            raise InputError(f"calibration token ids must be [samples, length], not {calib.shape}")
        return list(calib.split(batch_size))
    if isinstance(calib, Iterable):
        return [b if isinstance(b, torch.Tensor) else _token_ids(b) for b in calib]
    raise InputError(f"calib must be a text file, a token tensor or batches, not {type(calib)}")


def _token_ids(batch: Any) -> torch.Tensor:
    """The ``input_ids`` of a tokenizer's output. Calibration reads every
    token, so padded positions (zeros in ``attention_mask``) are refused."""
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        raise InputError(
            "calibration batches must be token id tensors or mappings with 'input_ids' "
            f"(a tokenizer's output), not {type(batch).__name__}"
        )
    mask = batch.get("attention_mask")
    if isinstance(mask, torch.Tensor) and not bool(mask.all()):
        raise InputError(
            "calibration batches hold padding (zeros in attention_mask), and calibration reads "
            "every token: pass a text file with tokenizer=..., or sequences of equal length "
            "tokenized without padding"
        )
    return batch["input_ids"]


def calibrate(
    model: nn.Module,
    batches: Sequence[torch.Tensor],
    *,
    gradients: bool = False,
    gram_for: Iterable[str] = (),
    blocks: Iterable[str] = (),
    progress: bool = True,
    layerwise: bool = False,
    device: str | torch.device | None = None,
    stack: Sequence[str] = (),
) -> Statistics:
    """Run ``batches`` of token ids through ``model`` and collect statistics.

    ``gram_for`` names Linear modules whose input Gram matrix is wanted;
    ``blocks`` names blocks whose influence is wanted. ``layerwise`` runs one
    block of the stack at a time on ``device`` (default: the model's device)
    for models larger than it; ``stack`` names the candidate blocks (an
    analysis's ``blocks``; default: the longest list of repeated layers).
    """
    if gradients:
        _require_loss(model, "collecting gradients")
    model_device = input_device(model)
    device = _concrete(device) if device is not None else model_device
    stats = Statistics()
    if layerwise:
        _check_layerwise(model, gradients)
        return calibrate_layerwise(
            model,
            batches,
            stats,
            device=device,
            stack=stack,
            gram_for=gram_for,
            blocks=blocks,
            progress=progress,
        ).finish()
    if device != model_device:
        raise InputError(
            f"calibrate(device='{device}') applies to layerwise=True; the whole model runs where "
            f"it is ({model_device}): move it with model.to(...), dispatch it with "
            "device_map=..., or pass layerwise=True"
        )
    modules = dict(model.named_modules())
    with recording(stats, modules, gram_for, blocks), offloaded_gradients(model, stats.gradients):
        for batch in tqdm(batches, desc="calibrating", disable=not progress, leave=False):
            ids = batch.to(device)
            with torch.set_grad_enabled(gradients):
                out = model(input_ids=ids, labels=ids if gradients else None, use_cache=False)
            if gradients:
                _loss(model, out).backward()
            stats.samples += ids.shape[0]
    if gradients:
        for name, param in model.named_parameters():
            if param.grad is not None:
                stats.gradients[name] = param.grad.detach().to("cpu", torch.float64)
                param.grad = None
    return stats.finish()


def _loss(model: nn.Module, output: Any) -> torch.Tensor:
    loss = getattr(output, "loss", None)
    if not isinstance(loss, torch.Tensor):
        raise InputError(
            f"{type(model).__name__} returned no loss for labels=input_ids, so gradients "
            "cannot be collected: use a forward-only criterion (flap, wanda-sp, activation) "
            "or 'magnitude'"
        )
    return loss


def _concrete(device: str | torch.device) -> torch.device:
    """``cuda`` as ``cuda:0`` (the current one), so devices compare equal."""
    return torch.empty(0, device=device).device


def _check_layerwise(model: nn.Module, gradients: bool) -> None:
    if gradients:
        needing = ", ".join(sorted(c.name for c in CRITERIA.values() if c.needs_gradients))
        raise InputError(
            "layerwise calibration runs one block at a time without the loss, so it cannot "
            f"collect gradients, which criterion {needing} needs: use a forward-only criterion "
            "(flap, wanda-sp, activation) or calibrate the whole model (layerwise=False, spread "
            "over devices with device_map=... if it does not fit one)"
        )
    if any("_hf_hook" in m.__dict__ for m in model.modules()):
        raise InputError(
            f"{type(model).__name__} is dispatched by accelerate (device_map), which already "
            "places its blocks: calibrate it with layerwise=False, or load it without "
            "device_map to calibrate it layerwise"
        )
