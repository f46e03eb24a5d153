"""The trained tiny-llama, dense and cut, exported to GGUF and run in llama.cpp
(llama-cpp-python): the same greedy continuation for 16 tokens and the same
last-token logits (1e-3 relative) as PyTorch."""

from __future__ import annotations

import pytest

from surgeon.export import gguf
from tests.export.conftest import FIXTURES
from tests.export.llama_cpp_run import (
    cpp_logits_and_greedy,
    llama_cpp,
    relative,
    torch_logits_and_greedy,
)

PROMPT = "The os module provides a portable way of using operating system"


@pytest.mark.parametrize("cut", ["dense", "uniform", "ragged"])
def test_llama_cpp_continues_like_pytorch(cut, cuts, tokenizer, tmp_path):
    model = cuts[cut]
    written = gguf(model, tmp_path / f"{cut}.gguf", dtype="f32", tokenizer=tokenizer)
    assert written.architecture == ("deci" if cut == "ragged" else "llama")
    ids = tokenizer(PROMPT)["input_ids"]
    cpp_first, cpp_tokens = cpp_logits_and_greedy(written.path, ids, 16)
    torch_first, torch_tokens = torch_logits_and_greedy(model, ids, 16)
    assert relative(cpp_first, torch_first) <= 1e-3
    assert cpp_tokens == torch_tokens


def test_the_ragged_file_holds_per_layer_arrays(ragged, tokenizer, tmp_path):
    from gguf import GGUFReader

    path = gguf(ragged, tmp_path / "ragged.gguf", dtype="f32", tokenizer=tokenizer).path
    fields = GGUFReader(path).fields

    def array(key: str) -> list[int]:
        field = fields[key]
        return [int(field.parts[i][0]) for i in field.data]

    assert array("deci.feed_forward_length") == [1024, 960, 896, 832, 768, 704, 576]
    assert array("deci.attention.head_count") == [6, 6, 3, 6, 6, 3, 6]
    assert array("deci.attention.head_count_kv") == [2, 2, 1, 2, 2, 1, 2]
    assert int(fields["deci.block_count"].parts[-1][0]) == 7


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_half_precision_files_run_close_to_pytorch(dtype, cuts, tokenizer, tmp_path):
    model = cuts["ragged"]
    path = gguf(model, tmp_path / f"{dtype}.gguf", dtype=dtype, tokenizer=tokenizer).path
    f32 = gguf(model, tmp_path / "f32.gguf", dtype="f32", tokenizer=tokenizer).path
    assert path.stat().st_size < 0.6 * f32.stat().st_size
    ids = tokenizer(PROMPT)["input_ids"]
    cpp_first, _ = cpp_logits_and_greedy(path, ids, 1)
    torch_first, _ = torch_logits_and_greedy(model, ids, 1)
    assert relative(cpp_first, torch_first) <= 0.05
    assert cpp_first.argmax() == torch_first.argmax()


def test_llama_cpp_tokenizes_held_out_text_like_the_fixture_tokenizer(dense, tokenizer, tmp_path):
    path = gguf(dense, tmp_path / "dense.gguf", dtype="f16", tokenizer=tokenizer).path
    vocab = llama_cpp(path, vocab_only=True)
    lines = (FIXTURES / "text" / "valid.txt").read_text().splitlines()[:600]
    chunks = ["\n".join(lines[i : i + 6]) for i in range(0, len(lines), 6)]  # with newlines
    checked = 0
    for chunk in chunks:
        expected = tokenizer(chunk)["input_ids"]
        assert vocab.tokenize(chunk.encode(), add_bos=False, special=False) == expected, chunk
        checked += len(expected)
    assert checked > 5000
    assert vocab.detokenize(tokenizer(chunks[0])["input_ids"]).decode() == chunks[0]
