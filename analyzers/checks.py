"""Checks on what users pass in, each failing with an error that names the
parameter, input or module at fault and says what to do."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from surgeon.errors import InputError

__all__ = ["check_devices", "check_dtypes", "check_no_hooks", "check_eval_mode"]

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def check_dtypes(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        if param.dtype not in SUPPORTED_DTYPES:
            raise InputError(
                f"parameter '{name}' has dtype {param.dtype}; fx-surgeon cuts float32, float64, "
                "bfloat16 and float16 weights: dequantize the model first"
            )


def check_devices(model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
    """Inputs must live where the model does (meta models take meta or CPU inputs)."""
    devices = {t.device for t in (*model.parameters(), *model.buffers())}
    if len(devices) != 1:
        return  # empty, or dispatched across devices: the model moves inputs itself
    (device,) = devices
    leaves = pytree.tree_flatten_with_path((args, kwargs))[0]
    for path, value in leaves:
        if not isinstance(value, torch.Tensor) or value.device == device:
            continue
        if device.type == "meta" and value.device.type == "cpu":
            continue
        raise InputError(
            f"input {pytree.keystr(path)} is on {value.device} but the model is on {device}: "
            f"move the inputs with .to('{device}')"
        )


# transformers 5.x installs these once a model returns hidden states or attentions;
# they only append what a forward with output_hidden_states=True asks for, whatever
# the shapes, and stay on the model for good.
SHAPE_FREE_HOOKS = ("transformers.utils.output_capturing",)


def check_no_hooks(model: nn.Module) -> None:
    """Hooks are copied with the model and may assume the old shapes."""
    for name, module in model.named_modules():
        kinds = [
            kind
            for kind, hooks in (
                ("forward", module._forward_hooks),
                ("forward-pre", module._forward_pre_hooks),
                ("backward", module._backward_hooks),
                ("backward-pre", module._backward_pre_hooks),
            )
            if any(getattr(h, "__module__", None) not in SHAPE_FREE_HOOKS for h in hooks.values())
        ]
        if kinds:
            raise InputError(
                f"module '{name or '<root>'}' has {' and '.join(kinds)} hooks; they would be "
                "copied into the cut model and may assume the old shapes: remove them "
                "(handle.remove()) before cutting and add them back afterwards"
            )


def check_eval_mode(*models: nn.Module) -> None:
    for model in models:
        training = [name or "<root>" for name, m in model.named_modules() if m.training]
        if training:
            raise InputError(
                f"{type(model).__name__} is in training mode (module '{training[0]}'): dropout "
                "and batch statistics make outputs random, so nothing can be verified; "
                "call model.eval() first"
            )
