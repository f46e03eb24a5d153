"""A transformers ``config.json`` with ``per_layer_config`` overrides (transformers
5.23's heterogeneous configs) for a cut whose layers differ.

Only some classes build their layers from ``config.per_layer_config[i]``
(Step-3.7's attention, Gemma-4's KV heads, ...); Llama, Mistral and Qwen build
every layer from the global config. Rather than keep a list, the config is
proven: the model class is built from it on the meta device and every tensor
shape must equal the cut model's. A class that ignores an override is refused,
naming the tensors it would build wrong.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from surgeon.export.decoder import ExportError

__all__ = ["layer_attributes", "per_layer_config"]


def layer_attributes(layer: nn.Module) -> dict[str, int]:
    """The config attributes one decoder layer's modules imply: head counts from
    the q/k projections and the attention's ``head_dim``, the MLP width from its
    up projection."""
    found: dict[str, int] = {}
    attention = getattr(layer, "self_attn", None)
    head_dim = getattr(attention, "head_dim", None)
    if isinstance(head_dim, int) and hasattr(attention, "q_proj"):
        found["head_dim"] = head_dim
        found["num_attention_heads"] = attention.q_proj.out_features // head_dim
        if getattr(attention, "k_proj", None) is not None:
            found["num_key_value_heads"] = attention.k_proj.out_features // head_dim
    up = getattr(getattr(layer, "mlp", None), "up_proj", None)
    if isinstance(up, nn.Linear):
        found["intermediate_size"] = up.out_features
    return found


def per_layer_config(model: nn.Module):
    """``model.config`` with the per-layer overrides its cut layers need, checked
    by rebuilding the class from it; :class:`ExportError` when the class does
    not read them."""
    config = getattr(model, "config", None)
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if config is None or layers is None:
        raise ExportError(f"{type(model).__name__} is not a transformers decoder with .layers")
    base = {k: v for k, v in config.to_dict().items() if k != "per_layer_config"}
    overrides: dict[int, dict[str, Any]] = {}
    for index, layer in enumerate(layers):
        changed = {k: v for k, v in layer_attributes(layer).items() if base.get(k) != v}
        if changed:
            overrides[index] = changed
    try:
        candidate = type(config).from_dict({**base, "per_layer_config": overrides})
    except Exception as refused:  # the config class validates the overrides
        reason = str(refused).split(". ")[0]
        shown = str(dict(list(overrides.items())[:3])) + (" ..." if len(overrides) > 3 else "")
        refuses = f"{type(config).__name__} refuses per_layer_config {shown}: {reason}"
        raise _refusal(model, refuses) from refused
    _check_builds_the_same(model, candidate)
    return candidate


def _refusal(model: nn.Module, reason: str) -> ExportError:
    return ExportError(
        f"{type(model).__name__} does not build its layers from config.per_layer_config "
        f"({reason}); save with the default format (surgeon.load reloads it) or serve it "
        "through surgeon.export.gguf / surgeon.export.decilm"
    )


def _check_builds_the_same(model: nn.Module, config) -> None:
    from accelerate import init_empty_weights

    try:
        with init_empty_weights(include_buffers=False):
            rebuilt = type(model)(config)
    except Exception as error:  # e.g. transformers' AmbiguousGlobalPerLayerAttributeError
        raise _refusal(model, str(error).split(". ")[0]) from error
    built = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    wrong = [
        f"{k}: cut {tuple(v.shape)}, built {built.get(k)}"
        for k, v in model.state_dict().items()
        if built.get(k) != tuple(v.shape)
    ]
    if wrong:
        raise _refusal(model, f"it builds {len(wrong)} tensors differently: {'; '.join(wrong[:3])}")
