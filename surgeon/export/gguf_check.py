"""Check a written GGUF file the way it will be used: run it in llama.cpp
(llama-cpp-python) on a short prompt and compare the last-token logits with
the PyTorch model's. A file that computes something else is not returned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["TOLERANCE", "llama_cpp_gap"]

# Largest |llama.cpp - PyTorch| / max |PyTorch| accepted for the file's weight
# type (llama.cpp's KV cache is kept in f32 for the check). Half-precision
# weights round each matrix; the reference runs in the model's own dtype.
TOLERANCE = {"f32": 1e-3, "f16": 1e-2, "bf16": 3e-2}
LOW_PRECISION_MODEL = 3e-2
PROMPT = "The quick brown fox jumps over the lazy dog, and then"
F32 = 0  # GGML_TYPE_F32


def tolerance(model: nn.Module, dtype: str) -> float:
    parameter = next(model.parameters())
    low = parameter.dtype in (torch.float16, torch.bfloat16)
    return max(TOLERANCE[dtype], LOW_PRECISION_MODEL) if low else TOLERANCE[dtype]


def llama_cpp_gap(model: nn.Module, path: Path, token_ids: list[int]) -> float | None:
    """Relative gap of the last-token logits, or None when llama-cpp-python is
    not installed."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(
        str(path),
        n_ctx=len(token_ids) + 8,
        n_threads=2,
        logits_all=True,
        verbose=False,
        type_k=F32,
        type_v=F32,
    )
    try:
        llm.eval(token_ids)
        served = np.array(llm.scores[len(token_ids) - 1], dtype=np.float64)
    finally:
        llm.close()
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(torch.tensor([token_ids], device=device)).logits[0, -1]
    reference = logits.double().cpu().numpy()
    return float(np.abs(served - reference).max() / np.abs(reference).max())
