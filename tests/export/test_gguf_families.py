"""Every Llama-family layout llama.cpp's graphs cover, uniform and ragged:
random models exported to GGUF f32 compute the same logits in llama.cpp, or
are refused with the reason (Qwen3's q/k norms have no place in the deci graph)."""

from __future__ import annotations

import pytest

from surgeon.export import ExportError, gguf
from tests.export.families import FAMILIES, build, cut
from tests.export.llama_cpp_run import cpp_logits_and_greedy, relative, torch_logits_and_greedy

IDS = [17, 400, 3, 8000, 250, 1024, 77, 5, 4095, 12]


@pytest.mark.parametrize("ragged", [False, True], ids=["uniform", "ragged"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_runs_in_llama_cpp_like_pytorch(family, ragged, tokenizer, tmp_path):
    model = cut(build(family), ragged)
    path = tmp_path / "model.gguf"
    if family == "qwen3" and ragged:
        with pytest.raises(ExportError, match="q_norm"):
            gguf(model, path, dtype="f32", tokenizer=tokenizer)
        assert not path.exists() and not list(tmp_path.iterdir())
        return
    written = gguf(model, path, dtype="f32", tokenizer=tokenizer)
    expected = "deci" if ragged else ("qwen3" if family == "qwen3" else "llama")
    assert written.architecture == expected
    cpp_first, cpp_tokens = cpp_logits_and_greedy(path, IDS, 8)
    torch_first, torch_tokens = torch_logits_and_greedy(model, IDS, 8)
    assert relative(cpp_first, torch_first) <= 1e-3
    assert cpp_tokens == torch_tokens


def test_a_tied_model_writes_no_output_matrix(tokenizer, tmp_path):
    from gguf import GGUFReader

    model = build("llama-tied")
    assert model.lm_head.weight is model.model.embed_tokens.weight
    path = gguf(model, tmp_path / "m.gguf", tokenizer=tokenizer).path
    names = {t.name for t in GGUFReader(path).tensors}
    assert "token_embd.weight" in names and "output.weight" not in names


REFUSED = {
    "gelu": (lambda: build("llama", hidden_act="gelu"), "silu"),
    "sliding window": (lambda: build("mistral", sliding_window=256), "sliding window"),
    "yarn": (
        lambda: build(
            "llama",
            rope_parameters={
                "rope_type": "yarn",
                "rope_theta": 10000.0,
                "factor": 4.0,
                "original_max_position_embeddings": 128,
            },
        ),
        "scales attention",
    ),
    "dynamic rope": (
        lambda: build(
            "llama", rope_parameters={"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}
        ),
        "dynamic",
    ),
    "small vocabulary": (lambda: build("llama", vocab_size=4096), "embeds only 4096"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_llama_cpp_cannot_express_is_refused(case, tokenizer, tmp_path):
    make, reason = REFUSED[case]
    with pytest.raises(ExportError, match=reason):
        gguf(make(), tmp_path / "m.gguf", tokenizer=tokenizer)
    assert not list(tmp_path.iterdir())


def test_other_architectures_are_refused_by_name(tmp_path, tokenizer):
    from tests.zoo import HF_MODELS

    for name in ("mixtral", "gemma3", "phi3", "gpt2"):
        with pytest.raises(ExportError, match="not a Llama-family causal LM"):
            gguf(HF_MODELS[name](), tmp_path / "m.gguf", tokenizer=tokenizer)
    assert not list(tmp_path.iterdir())


def test_a_pre_tokenizer_llama_cpp_lacks_is_refused(tmp_path):
    import tokenizers
    import transformers

    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab={"a": 0, "b": 1}, merges=[]))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend)
    with pytest.raises(ExportError, match="pre-tokenizer"):
        gguf(build("llama"), tmp_path / "m.gguf", tokenizer=tokenizer)
    assert not list(tmp_path.iterdir())


def test_bad_dtype_is_refused(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="f32, f16, bf16"):
        gguf(build("llama"), tmp_path / "m.gguf", dtype="q4", tokenizer=tokenizer)
    assert not list(tmp_path.iterdir())


def test_a_file_llama_cpp_computes_differently_is_not_written(tokenizer, tmp_path, monkeypatch):
    from surgeon.export import to_gguf

    model = build("llama")
    written = gguf(model, tmp_path / "good.gguf", dtype="f32", tokenizer=tokenizer)
    assert written.gap is not None and written.gap <= 1e-3
    assert "llama.cpp matches PyTorch" in str(written)
    monkeypatch.setattr(to_gguf, "_pairs_adjacent", lambda weight, heads: weight)  # a wrong RoPE
    with pytest.raises(ExportError, match="apart from PyTorch"):
        gguf(model, tmp_path / "bad.gguf", dtype="f32", tokenizer=tokenizer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.gguf"]
