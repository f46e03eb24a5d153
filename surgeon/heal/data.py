"""Training data for healing: token ids packed into fixed-length sequences.

Sources are a text file (plain or ``.xz``, read with the tokenizer), a tensor
of token ids (1-D stream or ``[n, length]``) or an iterable of batches
(tensors or dicts/``BatchEncoding`` with ``input_ids``). Everything becomes
one stream of ids, cut into ``seq_len`` rows with the tail dropped, as
pretraining packs documents. Bad sources fail here, before anything trains or
is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from surgeon.errors import InputError
from surgeon.text import read_text

__all__ = ["EVAL_WINDOW", "HealData", "pack", "prepare", "token_ids"]

EVAL_WINDOW = 256  # tokens per held-out window, as surgeon.evaluate scores them
_CHUNK = 1 << 20  # characters per tokenizer call (split at line ends)


@dataclass(frozen=True)
class HealData:
    train: torch.Tensor  # [n, seq_len] token ids
    held_out: torch.Tensor | None  # [m, EVAL_WINDOW] token ids, or None: no evaluation
    held_out_source: str  # where the held-out windows come from


def token_ids(data: Any, tokenizer: Any = None, limit: int | None = None) -> torch.Tensor:
    """One 1-D stream of token ids from ``data`` (see the module docstring);
    an iterable is read only until ``limit`` ids are collected."""
    if isinstance(data, (str, Path)):
        if tokenizer is None:
            raise InputError(f"heal: reading text from '{data}' needs a tokenizer")
        return _tokenize(read_text(data, allow_empty=True), tokenizer)
    if isinstance(data, torch.Tensor):
        return _checked(data, "the token tensor").reshape(-1)
    if isinstance(data, Iterable):
        rows, count = [], 0
        for index, batch in enumerate(data):
            ids = batch["input_ids"] if isinstance(batch, Mapping) else batch
            if not isinstance(ids, torch.Tensor):
                ids = torch.as_tensor(ids)
            rows.append(_checked(ids, f"batch {index}").reshape(-1))
            count += rows[-1].numel()
            if limit is not None and count >= limit:
                break
        return torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
    raise InputError(
        f"heal: data must be a text file, a tensor of token ids or batches, not {type(data)}"
    )


def pack(ids: torch.Tensor, seq_len: int) -> torch.Tensor:
    """``ids`` as ``[n, seq_len]`` rows (the tail shorter than a row dropped)."""
    rows = ids.numel() // seq_len
    return ids[: rows * seq_len].view(rows, seq_len)


def prepare(
    data: Any,
    tokenizer: Any,
    seq_len: int,
    vocab_size: int,
    eval_data: Any = None,
    eval_windows: int = 64,
    tokens: int | None = None,
) -> HealData:
    """Training rows and held-out windows. Without ``eval_data`` the last
    ``eval_windows`` windows (at most a tenth of the data) are held out of training."""
    ids = token_ids(data, tokenizer, limit=None if tokens is None else tokens + seq_len)
    held_out, source = None, "none"
    if eval_data is not None:
        windows = pack(token_ids(eval_data, tokenizer), EVAL_WINDOW)
        if len(windows) == 0:
            raise InputError(f"heal: the evaluation data holds fewer than {EVAL_WINDOW} tokens")
        held_out, source = windows[:eval_windows], "evaluation data"
    else:
        count = min(eval_windows, ids.numel() // EVAL_WINDOW // 10)
        if count:
            held_out = ids[-count * EVAL_WINDOW :].view(count, EVAL_WINDOW)
            ids, source = ids[: -count * EVAL_WINDOW], f"last {count} windows of the data"
    train = pack(ids, seq_len)
    if len(train) == 0:
        raise InputError(
            f"heal: the training data holds {ids.numel()} tokens, fewer than one sequence "
            f"of seq_len={seq_len}: give more data or a shorter seq_len"
        )
    for name, part in (("training", train), ("evaluation", held_out)):
        if part is not None and int(part.max()) >= vocab_size:
            raise InputError(
                f"heal: the {name} data holds token id {int(part.max())}, beyond the model's "
                f"vocabulary of {vocab_size}: was it tokenized for another model?"
            )
    return HealData(train.long(), None if held_out is None else held_out.long(), source)


def _tokenize(text: str, tokenizer: Any) -> torch.Tensor:
    chunks, start = [], 0
    while start < len(text):
        end = text.find("\n", start + _CHUNK)
        end = len(text) if end < 0 else end + 1
        chunks.append(text[start:end])
        start = end
    if not chunks:
        return torch.zeros(0, dtype=torch.long)
    encoded = tokenizer(chunks, add_special_tokens=False)["input_ids"]
    return torch.cat([torch.tensor(ids, dtype=torch.long) for ids in encoded])


def _checked(ids: torch.Tensor, what: str) -> torch.Tensor:
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise InputError(f"heal: {what} must hold integer token ids, not {ids.dtype}")
    if ids.numel() and int(ids.min()) < 0:
        raise InputError(f"heal: {what} holds a negative token id ({int(ids.min())})")
    return ids.long()
