"""Small random Llama-family models sized for the fixture tokenizer (8192 ids),
and the two cuts every exporter test sweeps: uniform and ragged."""

from __future__ import annotations

import torch
import transformers as hf

import surgeon

VOCAB = 8192
SHAPE = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=512,
)
FAMILIES = {
    "llama": (hf.LlamaForCausalLM, hf.LlamaConfig, {}),
    "llama-tied": (hf.LlamaForCausalLM, hf.LlamaConfig, {"tie_word_embeddings": True}),
    "llama-biases": (
        hf.LlamaForCausalLM,
        hf.LlamaConfig,
        {"attention_bias": True, "mlp_bias": True},
    ),
    "llama3-rope": (
        hf.LlamaForCausalLM,
        hf.LlamaConfig,
        {
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            }
        },
    ),
    "linear-rope": (
        hf.LlamaForCausalLM,
        hf.LlamaConfig,
        {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}},
    ),
    "mistral": (hf.MistralForCausalLM, hf.MistralConfig, {"sliding_window": None}),
    "qwen2": (hf.Qwen2ForCausalLM, hf.Qwen2Config, {}),
    "qwen3": (hf.Qwen3ForCausalLM, hf.Qwen3Config, {}),
}


def build(family: str, **overrides) -> torch.nn.Module:
    model_class, config_class, extra = FAMILIES[family]
    torch.manual_seed(0)
    model = model_class(config_class(**{**SHAPE, **extra, **overrides})).eval()
    with torch.no_grad():  # weights large enough that logits are far from uniform
        for name, parameter in model.named_parameters():
            if parameter.ndim == 2:
                parameter.normal_(0, 0.2 if "embed" not in name else 1.0)
            elif "bias" in name:
                parameter.normal_(0, 0.1)
    return model


def cut(model: torch.nn.Module, ragged: bool) -> torch.nn.Module:
    """Uniform: every MLP halved. Ragged: MLP widths 96/64/(removed), KV group 0
    gone in layer 1, layer 2 removed."""
    analysis = surgeon.analyze(model)
    mlps = analysis.by_kind("mlp")
    if not ragged:
        keep = {g.id: list(range(0, g.size, 2)) for g in mlps}
        plan = surgeon.Plan.for_analysis(analysis, keep=keep)
        return surgeon.apply(model, plan, analysis=analysis)
    keep = {mlps[0].id: list(range(96)), mlps[1].id: list(range(1, 128, 2))}
    attention = analysis.group("attention@model.layers.1.self_attn")
    keep[attention.id] = list(range(attention.q_per_kv, 2 * attention.q_per_kv))
    plan = surgeon.Plan.for_analysis(analysis, keep=keep, remove_blocks=("model.layers.2",))
    return surgeon.apply(model, plan, analysis=analysis)
