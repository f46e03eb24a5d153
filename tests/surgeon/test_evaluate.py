"""surgeon.evaluate: the one perplexity helper."""

from __future__ import annotations

import math

import pytest
import torch

import surgeon
from surgeon.evaluate import perplexity, text_windows
from tests.zoo import HF_MODELS


def test_perplexity_is_the_exponentiated_mean_token_loss():
    model = HF_MODELS["llama"]().eval()
    ids = torch.randint(4, 128, (6, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = math.exp(model(ids, labels=ids).loss.item())  # equal windows: mean of means
    assert perplexity(model, ids, window=16, batch=4) == pytest.approx(expected, rel=1e-5)
    stream = torch.cat([ids.reshape(-1), ids[0, :5]])  # a tail shorter than a window is dropped
    assert perplexity(model, stream, window=16) == pytest.approx(expected, rel=1e-5)


def test_text_windows_and_bad_arguments(tmp_path):
    class Whitespace:
        def __call__(self, text, return_tensors):
            return type("Encoded", (), {"input_ids": torch.arange(len(text.split()))[None]})

    path = tmp_path / "valid.txt"
    path.write_text("a " * 50)
    assert text_windows(path, Whitespace(), window=16).shape == (3, 16)
    assert text_windows(path, Whitespace(), window=16, count=2).shape == (2, 16)
    with pytest.raises(surgeon.InputError, match="50 tokens, fewer than one window of 64"):
        text_windows(path, Whitespace(), window=64)
    model = HF_MODELS["llama"]()
    with pytest.raises(surgeon.InputError, match="evaluate: batch"):
        perplexity(model, torch.zeros(2, 8, dtype=torch.long), batch=0)
    with pytest.raises(surgeon.InputError, match="evaluate: token_ids"):
        perplexity(model, torch.zeros(2, 2, 2, dtype=torch.long))


def test_text_files_are_read_plain_or_xz_with_clear_errors(tmp_path):
    import lzma

    from surgeon.text import read_text

    packed = tmp_path / "train.txt.xz"
    with lzma.open(packed, "wt", encoding="utf-8") as handle:
        handle.write("one two three")
    assert read_text(packed) == "one two three"
    with pytest.raises(surgeon.InputError, match="no such text file"):
        read_text(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(surgeon.InputError, match="holds no text"):
        read_text(tmp_path / "empty.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(surgeon.InputError, match="is not UTF-8 text"):
        read_text(tmp_path / "binary.txt")
