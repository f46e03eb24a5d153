"""Run a GGUF file in llama.cpp (through llama-cpp-python) and the PyTorch
model it came from the same way: last-token logits of a prompt, then greedy
decoding token by token."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

F32 = 0  # GGML_TYPE_F32: llama.cpp keeps its KV cache in f16 unless told otherwise


def llama_cpp(path: Path, **options):
    from llama_cpp import Llama

    settings = dict(n_ctx=256, n_threads=2, logits_all=True, verbose=False, seed=0)
    settings.update(type_k=F32, type_v=F32)  # compare f32 weights with f32 arithmetic
    return Llama(str(path), **{**settings, **options})


def cpp_logits_and_greedy(path: Path, ids: list[int], steps: int) -> tuple[np.ndarray, list[int]]:
    model = llama_cpp(path)
    model.eval(ids)
    first = np.array(model.scores[model.n_tokens - 1], dtype=np.float64)
    generated = [int(first.argmax())]
    for _ in range(steps - 1):
        model.eval([generated[-1]])
        generated.append(int(np.argmax(model.scores[model.n_tokens - 1])))
    model.close()
    return first, generated


@torch.no_grad()
def torch_logits_and_greedy(model, ids: list[int], steps: int) -> tuple[np.ndarray, list[int]]:
    tokens = torch.tensor([ids])
    first = model(tokens).logits[0, -1].double().numpy()
    generated = [int(first.argmax())]
    for _ in range(steps - 1):
        tokens = torch.cat([tokens, torch.tensor([[generated[-1]]])], dim=1)
        generated.append(int(model(tokens).logits[0, -1].argmax()))
    return first, generated


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference relative to the largest reference logit."""
    return float(np.abs(a - b).max() / np.abs(b).max())
