"""Reference shapes: ``LlamaConfig`` keyword arguments of released models.

Built on the meta device they need no weights and no download; the
benchmarks (analysis at scale, streaming, GPU speed) and the tests of
:mod:`surgeon.plan.depth`, whose per-block cost was fitted on Llama-3-8B, use them.
"""

from __future__ import annotations

__all__ = ["LLAMA3_2_3B", "LLAMA3_70B", "LLAMA3_8B"]

LLAMA3_8B = dict(
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=128256,
    rope_theta=500000.0,
    max_position_embeddings=8192,
    tie_word_embeddings=False,
)
LLAMA3_70B = dict(
    LLAMA3_8B,
    hidden_size=8192,
    intermediate_size=28672,
    num_hidden_layers=80,
    num_attention_heads=64,
)
LLAMA3_2_3B = dict(
    LLAMA3_8B,
    hidden_size=3072,
    intermediate_size=8192,
    num_hidden_layers=28,
    num_attention_heads=24,
    tie_word_embeddings=True,
    max_position_embeddings=131072,
)
