"""A SentencePiece-style tokenizer (BPE with byte fallback and '▁' for spaces,
as Llama-2 and Mistral ship it in tokenizer.json), trained here on the
fixture's calibration text: llama.cpp tokenizes held-out text like it."""

from __future__ import annotations

import json

import pytest
import transformers
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from surgeon.export import gguf
from tests.export.conftest import FIXTURES
from tests.export.families import build
from tests.export.llama_cpp_run import llama_cpp

SPECIALS = ["<unk>", "<s>", "</s>"]
BYTES = [f"<0x{i:02X}>" for i in range(256)]


@pytest.fixture(scope="module", params=["prepend", "metaspace"])
def sentencepiece_tokenizer(request, tiny_llama_dir):
    """Trained BPE, then laid out as Llama-2's: specials, 256 byte tokens, pieces;
    spaces marked by a Prepend + Replace normalizer (Llama-2's legacy file) or by
    a Metaspace pre-tokenizer (Mistral's)."""
    trained = Tokenizer(models.BPE(unk_token="<unk>"))
    trained.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    calib = (FIXTURES / "text" / "calib.txt").read_text()[:300_000]
    trained.train_from_iterator(
        calib.splitlines(), trainers.BpeTrainer(vocab_size=1500, special_tokens=SPECIALS)
    )
    learned = json.loads(trained.to_str())["model"]
    pieces = sorted((i, t) for t, i in learned["vocab"].items() if t not in SPECIALS)
    vocab = {t: i for i, t in enumerate(SPECIALS + BYTES + [t for _, t in pieces])}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    backend = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True))
    if request.param == "prepend":
        backend.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
    else:  # split=False: one BPE over the whole text, as Mistral's file does
        backend.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement="▁", prepend_scheme="first", split=False
        )
    backend.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    backend.add_special_tokens(SPECIALS)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def test_llama_cpp_tokenizes_like_a_sentencepiece_tokenizer(sentencepiece_tokenizer, tmp_path):
    tokenizer = sentencepiece_tokenizer
    model = build("llama", vocab_size=len(tokenizer))
    path = gguf(model, tmp_path / "spm.gguf", tokenizer=tokenizer).path
    vocab = llama_cpp(path, vocab_only=True)
    lines = (FIXTURES / "text" / "valid.txt").read_text().splitlines()[:300]
    samples = [" ".join(lines[i : i + 4]).strip() for i in range(0, len(lines), 4)]
    samples += ["naïve café, Straße — 東京 ☃", "two  spaces and\ttabs ", "x=1; y = [2, 3]"]
    for text in samples:
        expected = tokenizer(text)["input_ids"]
        assert expected[0] == tokenizer.bos_token_id
        assert vocab.tokenize(text.encode(), add_bos=True, special=False) == expected, text


def test_leading_whitespace_differs_only_under_metaspace(sentencepiece_tokenizer, tmp_path):
    """llama.cpp always puts a space before the text (the legacy rule); Metaspace
    with prepend_scheme='first' does not when the text starts with one."""
    tokenizer = sentencepiece_tokenizer
    path = gguf(build("llama", vocab_size=len(tokenizer)), tmp_path / "s.gguf", tokenizer=tokenizer)
    vocab = llama_cpp(path.path, vocab_only=True)
    text = "   indented text"
    expected = tokenizer(text)["input_ids"]
    got = vocab.tokenize(text.encode(), add_bos=True, special=False)
    legacy = tokenizer.backend_tokenizer.normalizer is not None
    if legacy:
        assert got == expected
    else:
        space = tokenizer.convert_tokens_to_ids("▁")
        assert got == [expected[0], space, *expected[1:]]
