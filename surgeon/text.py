"""Text files into token ids: the one reader calibration, evaluation and healing share.

A text file (plain, or ``.xz`` as training dumps often are) is tokenized as one
stream and cut into fixed windows; the tail shorter than a window is dropped.
"""

from __future__ import annotations

import lzma
from pathlib import Path
from typing import Any

import torch

from surgeon.errors import InputError

__all__ = ["read_text", "text_windows"]


def read_text(path: str | Path, allow_empty: bool = False) -> str:
    """The text of ``path`` (UTF-8; ``.xz`` decompressed); a clear error when it
    is missing or not text, and (unless ``allow_empty``) when it holds none."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such text file: '{path}' (it does not exist)")
    try:
        if path.suffix == ".xz":
            with lzma.open(path, "rt", encoding="utf-8") as handle:
                text = handle.read()
        else:
            text = path.read_text(encoding="utf-8")
    except (lzma.LZMAError, EOFError) as error:
        raise InputError(f"'{path}' is not a readable .xz file ({error})") from None
    except UnicodeDecodeError as error:
        raise InputError(
            f"'{path}' is not UTF-8 text ({error.reason} at byte {error.start}); "
            "give a UTF-8 text file (or .xz of one), a tensor of token ids or batches"
        ) from None
    if not allow_empty and not text.strip():
        raise InputError(f"'{path}' holds no text")
    return text


def text_windows(
    path: str | Path, tokenizer: Any, window: int = 256, count: int | None = None
) -> torch.Tensor:
    """Token ids of the text file ``path`` cut into ``[n, window]`` (the tail
    shorter than a window is dropped; ``count`` keeps the first ``n``)."""
    if tokenizer is None:
        raise InputError(f"reading '{path}' as tokens needs a tokenizer (tokenizer=...)")
    ids = tokenizer(read_text(path), return_tensors="pt").input_ids[0]
    windows = ids.numel() // window
    if windows == 0:
        raise InputError(f"'{path}' holds {ids.numel()} tokens, fewer than one window of {window}")
    return ids[: windows * window].view(windows, window)[:count]
