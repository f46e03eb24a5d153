"""Calibration of any ``nn.Module`` on the user's own batches.

A vision model (or any model that does not read token ids) is calibrated on
batches as a ``DataLoader`` yields them: ``(inputs, target)`` pairs, or the
inputs alone; ``inputs`` take every form :func:`~surgeon.analyze` accepts. A
gradient criterion (Taylor) back-propagates ``loss_fn(output, target)``
(``loss_fn(output)`` for batches without a target), or the ``loss`` the
model returns. Gradients are taken with ``torch.autograd.grad``, so the
model's own ``.grad`` fields are left alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from surgeon.analyzers.example_inputs import call_inputs
from surgeon.errors import InputError

from .statistics import Statistics, recording

__all__ = ["calibrate_examples", "example_batches", "reads_token_ids"]

Batch = tuple[Any, Any]  # (inputs, target or None)


def reads_token_ids(model: nn.Module) -> bool:
    """True for a transformers model whose forward takes ``input_ids``: it is
    calibrated on token ids (a text file, a token tensor)."""
    if getattr(model, "config", None) is None:
        return False
    try:
        return "input_ids" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def example_batches(calib: Any, inputs: Any) -> list[Batch]:
    """``calib`` as ``(inputs, target)`` pairs; without ``calib``, the example
    ``inputs`` are the one batch (with no target)."""
    if calib is None:
        if inputs is None:
            raise InputError(
                "this model does not read token ids: pass inputs=<example inputs> and, for a "
                "criterion that reads data, calib=<batches of (inputs, target)>"
            )
        return [(inputs, None)]
    if isinstance(calib, (torch.Tensor, Mapping)) or not isinstance(calib, Iterable):
        raise InputError(
            "calib for a model that does not read token ids is an iterable of batches: "
            f"(inputs, target) pairs as a DataLoader yields them, or tensors; not {type(calib)}"
        )
    batches = []
    for batch in calib:
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            batches.append((batch[0], batch[1]))
        elif isinstance(batch, (torch.Tensor, Mapping)):
            batches.append((batch, None))
        else:
            raise InputError(
                "each calibration batch is an (inputs, target) pair or a tensor/dict of "
                f"inputs, not {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            )
    if not batches:
        raise InputError("calib holds no batches")
    return batches


def calibrate_examples(
    model: nn.Module,
    batches: Sequence[Batch],
    *,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    gradients: bool = False,
    gram_for: Iterable[str] = (),
    blocks: Iterable[str] = (),
    progress: bool = True,
) -> Statistics:
    """Run ``batches`` through ``model`` and collect what the criteria read
    (inputs of every ``nn.Linear``, block influence, and with ``gradients``
    the summed gradients of the loss)."""
    stats = Statistics()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if gradients and not params:
        raise InputError(f"{type(model).__name__} has no parameter that requires grad")
    with recording(stats, dict(model.named_modules()), gram_for, blocks):
        for inputs, target in tqdm(batches, desc="calibrating", disable=not progress, leave=False):
            args, kwargs = call_inputs(model, inputs)
            with torch.set_grad_enabled(gradients):
                output = model(*args, **kwargs)
            if gradients:
                loss = _loss(model, output, target, loss_fn)
                found = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
                for (name, _), grad in zip(params, found, strict=True):
                    if grad is not None:
                        grad = grad.detach().to("cpu", torch.float64)
                        total = stats.gradients.get(name)
                        stats.gradients[name] = grad if total is None else total + grad
            stats.samples += _batch_size(args, kwargs)
    return stats.finish()


def _loss(model: nn.Module, output: Any, target: Any, loss_fn) -> torch.Tensor:
    if loss_fn is not None:
        loss = loss_fn(output) if target is None else loss_fn(output, target)
    else:
        loss = getattr(output, "loss", None)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise InputError(
            f"a gradient criterion needs a scalar loss: {type(model).__name__} returned "
            f"{'no loss' if loss_fn is None else f'{type(loss).__name__} from loss_fn'}; pass "
            "loss_fn=<function of (output, target), or of output for batches without a "
            "target> returning a scalar tensor"
        )
    return loss


def _batch_size(args: tuple, kwargs: dict[str, Any]) -> int:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    return 1
