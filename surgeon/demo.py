"""The embedded default model: a small Llama-style decoder (GQA, gated MLP, RMSNorm,
RoPE) built from a config with random weights, so the demo needs no download."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

__all__ = ["DEMO_CONFIG", "demo_model", "demo_plan"]

DEMO_CONFIG = dict(
    vocab_size=1024,
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=32,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)


def demo_model(seed: int = 0) -> LlamaForCausalLM:
    """A 4-layer Llama with 8 query heads in 2 KV groups, in eval mode."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**DEMO_CONFIG)).eval()


def demo_plan(analysis) -> tuple[dict[str, list[int]], tuple[str, ...]]:
    """Keep the even MLP channels and the first KV group (with all its query
    heads) everywhere, and drop the last layer."""
    keep: dict[str, list[int]] = {}
    for group in analysis.prunable:
        if group.kind == "mlp":
            keep[group.id] = list(range(0, group.size, 2))
        elif group.kind == "attention":
            keep[group.id] = list(range(group.q_per_kv))  # units of KV group 0
    return keep, (analysis.blocks[-1].name,)
