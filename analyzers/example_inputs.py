"""Example inputs for capture: derived from a Hugging Face config, or normalised
from what the user passed."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from surgeon.errors import InputError

__all__ = [
    "call_inputs",
    "example_inputs",
    "normalise_inputs",
    "with_attention_mask",
    "without_cache",
]

BATCH, SEQUENCE = 2, 8


def call_inputs(model: nn.Module, inputs: Any = None) -> tuple[tuple, dict[str, Any]]:
    """The ``(args, kwargs)`` fx-surgeon calls ``model`` with: the user's
    ``inputs`` normalised (derived from a Hugging Face config when ``None``),
    with the KV cache off unless the user asked for it."""
    args, kwargs = example_inputs(model) if inputs is None else normalise_inputs(inputs)
    return args, without_cache(model, kwargs)


def without_cache(model: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with ``use_cache=False`` where ``model.forward`` takes it and
    the caller did not set it. A KV cache only holds copies of the keys and
    values, whose head axes a cut changes by design; a model that builds one
    returns it beside its outputs (an object capture cannot return and a check
    should not compare), so the analysis and the checks run without it."""
    if "use_cache" in kwargs or not (_takes(model, "use_cache") or _passes_config_flags(model)):
        return kwargs
    return {**kwargs, "use_cache": False}


def _passes_config_flags(model: nn.Module) -> bool:
    """A Hugging Face model whose forward takes ``**kwargs`` and whose config has
    ``use_cache`` reads the flag from them (GraniteMoeHybrid)."""
    if not hasattr(getattr(model, "config", None), "use_cache"):
        return False
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _takes(model: nn.Module, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # builtins and C extensions have no signature
        return False


def normalise_inputs(inputs: Any) -> tuple[tuple, dict[str, Any]]:
    """Accept a tensor, a tuple/list of positional args, a mapping of keyword
    args (a dict, a tokenizer's ``BatchEncoding``), or an ``(args, kwargs)``
    pair."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, Mapping):
        return (), _keyword_args(inputs)
    if (
        isinstance(inputs, tuple)
        and len(inputs) == 2
        and isinstance(inputs[0], (tuple, list))
        and isinstance(inputs[1], Mapping)
    ):
        return tuple(inputs[0]), _keyword_args(inputs[1])
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    raise InputError(
        f"inputs must be a tensor, a tuple of positional args, a mapping of keyword args "
        f"(a dict, a tokenizer's BatchEncoding) or an (args, kwargs) pair, "
        f"not {type(inputs).__name__}"
    )


def _keyword_args(mapping: Mapping) -> dict[str, Any]:
    for key in mapping:
        if not isinstance(key, str):
            raise InputError(f"keyword inputs must have str keys (argument names), not {key!r}")
    return {key: mapping[key] for key in mapping}


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
    dtype = _float_dtype_of(model)
    if main_input == "pixel_values" and _takes(model, "spatial_shapes"):
        kwargs.update(_patches(config, device, dtype))
    elif main_input == "pixel_values":
        kwargs["pixel_values"] = _pixels(config, device, dtype)
    elif main_input in ("input_ids", "inputs_embeds"):
        kwargs["input_ids"] = _token_ids(config, device)
        kwargs.update(_aligned_audio(model, config, device, dtype))
    elif main_input == "inputs" and _has_vocabulary(config):  # Perceiver's text models
        kwargs["inputs"] = _token_ids(config, device)
    else:
        raise InputError(
            f"cannot derive example inputs for {type(model).__name__} (main input "
            f"'{main_input}'): pass inputs=..."
        )
    if getattr(config, "is_encoder_decoder", False):
        kwargs["decoder_input_ids"] = _token_ids(config, device)
    return (), without_cache(model, kwargs)


def with_attention_mask(model: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """``kwargs`` with the all-ones ``attention_mask`` a tokenizer returns beside
    the token ids; None where the forward takes no mask or one is there already.
    Some models build that mask themselves only when not compiling (LongT5,
    SwitchTransformers: ``if attention_mask is None and not
    is_torchdynamo_compiling()``), so under export they need it given."""
    ids = kwargs.get("input_ids")
    if not isinstance(ids, torch.Tensor) or "attention_mask" in kwargs:
        return None
    if not _takes(model, "attention_mask"):
        return None
    return {**kwargs, "attention_mask": torch.ones_like(ids)}


def _patches(config, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Images as the sequences of flattened patches a forward taking
    ``spatial_shapes`` reads (Siglip2's NaFlex): ``num_patches`` patches of
    ``num_channels x patch_size x patch_size`` values per image, all of them
    real (``pixel_attention_mask``), on the squarest grid they fill."""
    vision = getattr(config, "vision_config", config)
    count, patch = int(vision.num_patches), int(vision.patch_size)
    height = next(h for h in range(math.isqrt(count), 0, -1) if count % h == 0)
    channels = getattr(vision, "num_channels", 3)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(BATCH, count, channels * patch * patch, generator=generator)
    return {
        "pixel_values": pixels.to(device=device, dtype=dtype),
        "pixel_attention_mask": torch.ones(BATCH, count, dtype=torch.long, device=device),
        "spatial_shapes": torch.tensor([[height, count // height]] * BATCH, device=device),
    }


def _aligned_audio(model: nn.Module, config, device, dtype) -> dict[str, torch.Tensor]:
    """Audio frames read beside the tokens, ``audio_length_per_tok`` frames per
    token (Voxtral Realtime adds each token's audio to its embedding, and its
    forward requires both); nothing for a config without that field."""
    frames = getattr(config, "audio_length_per_tok", None)
    audio = getattr(config, "audio_config", None)
    bins = getattr(audio, "num_mel_bins", None)
    if not frames or not bins or not _takes(model, "input_features"):
        return {}
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(BATCH, int(bins), SEQUENCE * int(frames), generator=generator)
    return {"input_features": features.to(device=device, dtype=dtype)}


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
    # a decoder over parallel audio codebooks (MusicGen) reads one row per codebook
    rows = BATCH * int(getattr(text, "num_codebooks", 1) or 1)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (rows, SEQUENCE), generator=generator)
    return ids.to(device)


def _has_vocabulary(config) -> bool:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(getattr(text, "vocab_size", 0) or 0) > 0


def _pixels(config, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    vision = getattr(config, "vision_config", config)
    size = getattr(vision, "image_size", 224)
    size = size if isinstance(size, int) else tuple(size)
    height, width = (size, size) if isinstance(size, int) else size
    channels = getattr(vision, "num_channels", 3)
    return torch.zeros(BATCH, channels, height, width, dtype=dtype, device=device)
