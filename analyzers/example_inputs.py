"""Example inputs for capture: derived from a Hugging Face config, or normalised
from what the user passed."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from surgeon.errors import InputError

__all__ = ["example_inputs", "normalise_inputs"]

BATCH, SEQUENCE = 2, 8


def normalise_inputs(inputs: Any) -> tuple[tuple, dict[str, Any]]:
    """Accept a tensor, a tuple/list of positional args, a dict of keyword args,
    or an ``(args, kwargs)`` pair."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, dict):
        return (), dict(inputs)
    if (
        isinstance(inputs, tuple)
        and len(inputs) == 2
        and isinstance(inputs[0], (tuple, list))
        and isinstance(inputs[1], dict)
    ):
        return tuple(inputs[0]), dict(inputs[1])
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    raise InputError(
        f"inputs must be a tensor, a tuple of positional args, a dict of keyword args "
        f"or an (args, kwargs) pair, not {type(inputs).__name__}"
    )


def example_inputs(model: nn.Module) -> tuple[tuple, dict[str, Any]]:
    """Inputs for a Hugging Face model built from its config: token ids for text
    models, pixel values for vision models, decoder ids for encoder-decoders."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise InputError(
            f"{type(model).__name__} is not a Hugging Face model, so example inputs cannot be "
            "derived from a config: pass inputs=... (a tensor, a tuple of args or a dict of kwargs)"
        )
    device = _device_of(model)
    main_input = getattr(model, "main_input_name", "input_ids")
    kwargs: dict[str, Any] = {}
    if main_input == "pixel_values":
        kwargs["pixel_values"] = _pixels(config, device, _float_dtype_of(model))
    elif main_input in ("input_ids", "inputs_embeds"):
        kwargs["input_ids"] = _token_ids(config, device)
    else:
        raise InputError(
            f"cannot derive example inputs for {type(model).__name__} (main input "
            f"'{main_input}'): pass inputs=..."
        )
    if getattr(config, "is_encoder_decoder", False):
        kwargs["decoder_input_ids"] = _token_ids(config, device)
    parameters = inspect.signature(model.forward).parameters
    if "use_cache" in parameters:
        kwargs["use_cache"] = False
    return (), kwargs


def _float_dtype_of(model: nn.Module) -> torch.dtype:
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _token_ids(config, device: torch.device) -> torch.Tensor:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    vocab = int(getattr(text, "vocab_size", 0) or 0)
    if vocab <= 0:
        raise InputError("the config has no vocab_size to draw example token ids from")
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (BATCH, SEQUENCE), generator=generator)
    return ids.to(device)


def _pixels(config, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    vision = getattr(config, "vision_config", config)
    size = getattr(vision, "image_size", 224)
    size = size if isinstance(size, int) else tuple(size)
    height, width = (size, size) if isinstance(size, int) else size
    channels = getattr(vision, "num_channels", 3)
    return torch.zeros(BATCH, channels, height, width, dtype=dtype, device=device)
