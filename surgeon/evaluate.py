"""Held-out perplexity: the one helper benches, tests and the CLI share.

Perplexity is ``exp`` of the mean next-token negative log-likelihood over
fixed, non-overlapping windows (``window`` tokens each, every window scored
from its own start, as in the pruning papers' WikiText-2 tables: LLM-Pruner,
FLAP, SliceGPT all use fixed windows without a sliding context). Every
window contributes ``window - 1`` predicted tokens, so the mean over windows
equals the mean over tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from surgeon.errors import InputError
from surgeon.text import text_windows

__all__ = ["perplexity", "text_windows"]


def perplexity(
    model: nn.Module, token_ids: torch.Tensor, window: int = 256, batch: int = 16
) -> float:
    """Perplexity of a causal LM on ``token_ids`` (1-D stream or ``[n, length]``),
    scored in non-overlapping windows of ``window`` tokens, ``batch`` at a time."""
    if token_ids.dim() == 1:
        usable = token_ids.numel() // window * window
        if usable == 0:
            raise InputError(f"evaluate: {token_ids.numel()} tokens, fewer than window={window}")
        token_ids = token_ids[:usable].view(-1, window)
    elif token_ids.dim() != 2:
        raise InputError(f"evaluate: token_ids must be 1-D or [n, length], not {token_ids.shape}")
    if batch < 1:
        raise InputError(f"evaluate: batch must be a positive int, not {batch!r}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for chunk in token_ids.split(batch):
                chunk = chunk.to(device)
                logits = model(input_ids=chunk, use_cache=False).logits.float()
                loss = nn.functional.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]),
                    chunk[:, 1:].reshape(-1),
                    reduction="sum",
                )
                total += float(loss)
                tokens += chunk[:, 1:].numel()
    finally:
        model.train(was_training)
    return math.exp(total / tokens)
