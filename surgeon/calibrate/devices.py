"""Devices during calibration, for models dispatched by accelerate.

A model loaded with ``device_map`` has no single device: ``model.device`` is
the first parameter's, which is ``meta`` when that parameter is offloaded. The
inputs belong on the execution device of the input embedding, which
accelerate's hook records. Offloaded weights are loaded into fresh parameters
for each forward and dropped after it, so their gradients never reach the
model's parameters: :func:`offloaded_gradients` catches them as they are
computed. :func:`onloaded` materialises offloaded weights for code that reads
them outside a forward (importance criteria).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["input_device", "offloaded_gradients", "onloaded"]

_MARK = "_surgeon_gradient_hooked"


def input_device(model: nn.Module) -> torch.device:
    """Where token ids must go: the input embedding's execution device (accelerate's
    hook), else its weight's device, else the first real parameter's (CPU if none)."""
    embedding = _input_embedding(model)
    candidates = [m for m in (embedding, model) if m is not None]
    for module in candidates:
        device = _execution_device(module)
        if device is not None:
            return device
    for module in candidates:
        for tensor in module.parameters():
            if tensor.device.type != "meta":
                return tensor.device
    return torch.device("cpu")


def _input_embedding(model: nn.Module) -> nn.Module | None:
    get = getattr(model, "get_input_embeddings", None)
    try:
        return get() if callable(get) else None
    except (NotImplementedError, AttributeError):
        return None


def _hooks(module: nn.Module) -> list[Any]:
    """accelerate's hooks on ``module`` (a SequentialHook unpacked)."""
    hook = module.__dict__.get("_hf_hook")
    if hook is None:
        return []
    return list(getattr(hook, "hooks", (hook,)))


def _execution_device(module: nn.Module) -> torch.device | None:
    for hook in _hooks(module):
        device = getattr(hook, "execution_device", None)
        if device is not None:
            return torch.device(device)
    return None


def _offload_hooks(model: nn.Module) -> Iterator[tuple[str, nn.Module, Any]]:
    """(module name, module, hook) for every hook that loads offloaded weights."""
    for name, module in model.named_modules():
        for hook in _hooks(module):
            if getattr(hook, "offload", False):
                yield name, module, hook


@contextlib.contextmanager
def offloaded_gradients(model: nn.Module, sink: dict[str, torch.Tensor]) -> Iterator[None]:
    """Sum into ``sink`` (parameter name -> float64 CPU tensor) the gradients of
    weights that accelerate loads for a forward and drops after it."""
    wrapped = []
    for prefix, module, hook in _offload_hooks(model):
        hook.pre_forward = _catching(hook.pre_forward, module, prefix, sink)
        wrapped.append(hook)
    try:
        yield
    finally:
        for hook in wrapped:
            del hook.pre_forward  # the instance attribute: back to the class's method


def _catching(pre_forward, module: nn.Module, prefix: str, sink: dict[str, torch.Tensor]):
    def wrapper(hooked, *args, **kwargs):
        result = pre_forward(hooked, *args, **kwargs)
        if torch.is_grad_enabled():
            for name, param in module.named_parameters(recurse=False):
                # a tied weight is loaded once for several modules: hook it once
                if param.requires_grad and not getattr(param, _MARK, False):
                    setattr(param, _MARK, True)
                    param.register_hook(_adder(sink, f"{prefix}.{name}" if prefix else name))
        return result

    return wrapper


def _adder(sink: dict[str, torch.Tensor], name: str):
    def add(grad: torch.Tensor) -> None:
        grad = grad.detach().to("cpu", torch.float64)
        sink[name] = sink[name] + grad if name in sink else grad

    return add


@contextlib.contextmanager
def onloaded(model: nn.Module, device: str | torch.device = "cpu") -> Iterator[nn.Module]:
    """Offloaded weights materialised on ``device`` while in the context (all of
    them at once: for scoring, not for models larger than ``device``'s memory)."""
    loaded = []
    try:
        for _, module, hook in _offload_hooks(model):
            execution_device, hook.execution_device = hook.execution_device, torch.device(device)
            try:
                hook.pre_forward(module)
            finally:
                hook.execution_device = execution_device
            loaded.append((module, hook))
        yield model
    finally:
        for module, hook in reversed(loaded):
            hook.post_forward(module, None)
