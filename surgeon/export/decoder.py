"""What a serving engine must know about a (cut) Llama-family decoder, read from
its modules rather than its config: after a ragged cut the config's global widths
no longer describe the layers, the modules always do.

One reader for every exporter (GGUF, DeciLM ``block_configs``, per-layer
configs), so each fact about the cut model has one source. Anything the
Llama graph of a serving engine would compute differently is refused here,
with the module or config field at fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from surgeon.errors import SurgeonError

__all__ = ["DecoderShape", "ExportError", "LayerShape", "describe"]

# config.model_type -> family name in messages
FAMILIES = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


class ExportError(SurgeonError, ValueError):
    """The model cannot be written in the requested serving format; the message
    says which module or setting the format cannot express."""


@dataclass(frozen=True)
class LayerShape:
    """One decoder layer as built: query heads, KV heads and MLP width."""

    heads: int
    kv_heads: int
    ffn: int


@dataclass(frozen=True)
class DecoderShape:
    """A Llama-family decoder's structure and the settings its graph depends on."""

    family: str  # config.model_type
    hidden: int
    head_dim: int
    vocab: int
    context: int
    rms_eps: float
    rope_theta: float
    rope_factors: tuple[float, ...] | None  # per rotary pair: base inv_freq / actual
    attention_scale: float
    layers: tuple[LayerShape, ...]
    qk_norm: bool
    tied: bool
    biases: tuple[str, ...]  # projections with a bias in any layer, e.g. ("down_proj",)

    @property
    def ragged(self) -> bool:
        """True when layers differ in heads, KV heads or MLP width."""
        return len(set(self.layers)) > 1

    @property
    def default_scale(self) -> bool:
        return math.isclose(self.attention_scale, self.head_dim**-0.5, rel_tol=1e-6)


def describe(model: nn.Module) -> DecoderShape:
    """Read the structure of a transformers Llama, Mistral, Qwen2 or Qwen3 causal
    LM, cut or not; raise :class:`ExportError` naming what does not fit."""
    config = getattr(model, "config", None)
    family = getattr(config, "model_type", None)
    name = type(model).__name__
    if family not in FAMILIES or not hasattr(model, "model") or not hasattr(model, "lm_head"):
        known = ", ".join(FAMILIES.values())
        raise ExportError(
            f"{name} (model_type {family!r}) is not a Llama-family causal LM; the serving "
            f"exporters cover {known} (transformers *ForCausalLM)"
        )
    activation = getattr(config, "hidden_act", None)
    if activation != "silu":
        raise ExportError(f"{name}: hidden_act {activation!r}; llama.cpp's Llama graph uses silu")
    decoder = model.model
    layers = tuple(
        _layer(f"model.layers.{i}", layer, config) for i, layer in enumerate(decoder.layers)
    )
    if not layers:
        raise ExportError(f"{name} has no decoder layers left")
    first = decoder.layers[0].self_attn
    head_dim = int(first.head_dim)
    qk_norm = hasattr(first, "q_norm")
    embed = decoder.embed_tokens.weight
    tied = model.lm_head.weight is embed
    return DecoderShape(
        family=family,
        hidden=int(embed.shape[1]),
        head_dim=head_dim,
        vocab=int(embed.shape[0]),
        context=int(config.max_position_embeddings),
        rms_eps=float(decoder.norm.variance_epsilon),
        rope_theta=_rope_theta(config),
        rope_factors=_rope_factors(decoder.rotary_emb, _rope_theta(config), head_dim, name),
        attention_scale=float(first.scaling),
        layers=layers,
        qk_norm=qk_norm,
        tied=bool(tied),
        biases=tuple(sorted({name for layer in decoder.layers for name in _biases(layer)})),
    )


def _layer(prefix: str, layer: nn.Module, config) -> LayerShape:
    attention, mlp = layer.self_attn, layer.mlp
    expected = set(ATTENTION) | {"q_norm", "k_norm"}
    extra = [n for n, _ in attention.named_children() if n not in expected]
    extra += [f"mlp.{n}" for n, _ in mlp.named_children() if n not in (*MLP, "act_fn")]
    if extra:
        raise ExportError(
            f"{prefix}: modules {extra} have no place in llama.cpp's Llama graph; "
            "export a Llama, Mistral, Qwen2 or Qwen3 layout"
        )
    # Qwen2/3 keep the window on the module (None in full-attention layers);
    # Mistral reads config.sliding_window in every layer.
    window = getattr(attention, "sliding_window", getattr(config, "sliding_window", None))
    if window is not None:
        raise ExportError(
            f"{prefix}.self_attn: sliding window of {window} tokens; llama.cpp's Llama graph "
            "attends to the whole context, so longer prompts would differ. If you serve "
            "shorter prompts only, set model.config.sliding_window = None first"
        )
    head_dim = int(attention.head_dim)
    heads, rest = divmod(attention.q_proj.out_features, head_dim)
    kv_heads, kv_rest = divmod(attention.k_proj.out_features, head_dim)
    if rest or kv_rest or attention.v_proj.out_features != attention.k_proj.out_features:
        raise ExportError(
            f"{prefix}.self_attn: q/k/v widths {attention.q_proj.out_features}/"
            f"{attention.k_proj.out_features}/{attention.v_proj.out_features} are not whole "
            f"heads of {head_dim}"
        )
    ffn = int(mlp.up_proj.out_features)
    if heads == 0 or kv_heads == 0 or ffn == 0 or heads % kv_heads:
        raise ExportError(
            f"{prefix}: {heads} query heads, {kv_heads} KV heads, MLP width {ffn}; llama.cpp "
            "needs at least one of each and query heads a multiple of KV heads (remove the "
            "whole layer instead)"
        )
    return LayerShape(heads, kv_heads, ffn)


def _rope_theta(config) -> float:
    parameters = getattr(config, "rope_parameters", None) or {}
    return float(parameters.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def _rope_factors(rotary: nn.Module, theta: float, head_dim: int, name: str):
    """Per-pair frequency divisors that turn plain RoPE into the model's (linear,
    llama3 ...): llama.cpp applies them as its ``rope_freqs`` tensor. Scalings
    that also scale attention (YaRN, LongRoPE) or depend on length are refused."""
    rope_type = getattr(rotary, "rope_type", "default")
    if rope_type == "dynamic":
        raise ExportError(f"{name}: dynamic RoPE scaling depends on the sequence length")
    if not math.isclose(float(getattr(rotary, "attention_scaling", 1.0)), 1.0, rel_tol=1e-6):
        raise ExportError(
            f"{name}: RoPE type {rope_type!r} scales attention by "
            f"{float(rotary.attention_scaling):.4g}; not exported (plain, linear and llama3 are)"
        )
    inv_freq = rotary.inv_freq.detach().to(torch.float64, copy=True)
    if inv_freq.is_meta or inv_freq.numel() != head_dim // 2:
        raise ExportError(f"{name}: RoPE covers {inv_freq.numel() * 2} of {head_dim} dims")
    base = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    factors = base / inv_freq
    if torch.allclose(factors, torch.ones_like(factors), rtol=1e-6, atol=0):
        return None
    return tuple(float(f) for f in factors)


def _biases(layer: nn.Module) -> tuple[str, ...]:
    modules = {**dict(layer.self_attn.named_children()), **dict(layer.mlp.named_children())}
    return tuple(n for n in (*ATTENTION, *MLP) if getattr(modules.get(n), "bias", None) is not None)
