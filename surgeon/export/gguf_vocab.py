"""The tokenizer as llama.cpp reads it from GGUF metadata.

llama.cpp re-implements tokenization from the vocabulary, merges and a named
pre-tokenizer (the regex that splits text before BPE). The name is chosen
from the tokenizer's own ``tokenizer.json``: byte-level BPE with the GPT-2,
Llama-3 or Qwen2 split regex, or SentencePiece-style BPE with byte fallback.
Anything else is refused, since a wrong pre-tokenizer silently changes every
token id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surgeon.export.decoder import ExportError

__all__ = ["GgufVocab", "load_tokenizer", "vocab_of", "write_vocab"]

# GGUF token types (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# The split regexes of tokenizer.json files that llama.cpp's pre-tokenizers
# reproduce, as its llama-vocab.cpp quotes them, and the names it loads them by.
LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
    r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_BY_REGEX = {LLAMA3: "llama-bpe", QWEN2: "qwen2"}


@dataclass(frozen=True)
class GgufVocab:
    """Everything llama.cpp needs to tokenize like the Hugging Face tokenizer."""

    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece-style)
    pre: str | None
    tokens: tuple[str, ...]
    types: tuple[int, ...]
    scores: tuple[float, ...] | None
    merges: tuple[str, ...]
    special: dict[str, int]  # bos / eos / unk / pad ids
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    chat_template: str | None


def load_tokenizer(tokenizer: Any) -> Any:
    """A transformers tokenizer, or the one in the directory ``tokenizer`` names."""
    if not isinstance(tokenizer, (str, Path)):
        return tokenizer
    import transformers

    # Not from config.json: a ragged cut's config describes no single model,
    # and tokenizer_config.json names the tokenizer class by itself.
    no_config = transformers.PretrainedConfig()
    return transformers.AutoTokenizer.from_pretrained(tokenizer, config=no_config)


def vocab_of(tokenizer: Any, n_vocab: int) -> GgufVocab:
    """The GGUF vocabulary of a transformers tokenizer (or a directory holding
    one) for a model with ``n_vocab`` embedding rows."""
    tokenizer = load_tokenizer(tokenizer)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(
            f"{type(tokenizer).__name__} has no tokenizers backend (tokenizer.json); "
            "llama.cpp's vocabulary is written from one"
        )
    data = json.loads(backend.to_str())
    model = data["model"]
    if model.get("type") != "BPE":
        raise ExportError(f"tokenizer model {model.get('type')!r}: only BPE is exported")
    spm = bool(model.get("byte_fallback"))
    pre, add_space_prefix = _sentencepiece_prefix(data) if spm else (_byte_level_pre(data), False)
    tokens, types = _tokens(model["vocab"], data.get("added_tokens", []), n_vocab, spm)
    merges = tuple(m if isinstance(m, str) else " ".join(m) for m in model.get("merges", []))
    add_bos, add_eos = _added_specials(tokenizer)
    special = {
        kind: int(value)
        for kind in ("bos", "eos", "unk", "pad")
        if (value := getattr(tokenizer, f"{kind}_token_id", None)) is not None
    }
    template = getattr(tokenizer, "chat_template", None)
    return GgufVocab(
        model="llama" if spm else "gpt2",
        pre=None if spm else pre,
        tokens=tokens,
        types=types,
        scores=_merge_scores(tokens, merges) if spm else None,
        merges=() if spm else merges,
        special=special,
        add_bos=add_bos,
        add_eos=add_eos,
        add_space_prefix=add_space_prefix,
        chat_template=template if isinstance(template, str) else None,
    )


def write_vocab(writer, vocab: GgufVocab) -> None:
    """Add ``vocab`` to a ``gguf.GGUFWriter``."""
    writer.add_tokenizer_model(vocab.model)
    if vocab.pre is not None:
        writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(list(vocab.tokens))
    writer.add_token_types(list(vocab.types))
    if vocab.scores is not None:
        writer.add_token_scores(list(vocab.scores))
        writer.add_add_space_prefix(vocab.add_space_prefix)
    if vocab.merges:
        writer.add_token_merges(list(vocab.merges))
    for kind, token_id in vocab.special.items():
        getattr(writer, f"add_{kind}_token_id")(token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


def _byte_level_pre(data: dict) -> str:
    pre = data.get("pre_tokenizer") or {}
    if data.get("normalizer") not in (None, {"type": "NFC"}):
        normalizer = data["normalizer"]
        raise ExportError(f"byte-level tokenizer with normalizer {normalizer}: not exported")
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        if pre.get("add_prefix_space"):
            raise ExportError("ByteLevel add_prefix_space=True has no llama.cpp pre-tokenizer")
        return "gpt-2"
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    kinds = [s.get("type") for s in steps]
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = steps[0].get("pattern", {}).get("Regex")
        if regex in PRE_BY_REGEX and steps[0].get("behavior") == "Isolated":
            return PRE_BY_REGEX[regex]
    raise ExportError(
        f"byte-level pre-tokenizer {json.dumps(pre)[:200]} matches none of llama.cpp's "
        f"(gpt-2, {', '.join(PRE_BY_REGEX.values())}); its token ids would differ"
    )


def _sentencepiece_prefix(data: dict) -> tuple[None, bool]:
    """SentencePiece-style BPE: spaces become '▁'; llama.cpp adds the leading one
    itself when ``add_space_prefix`` is set."""
    pre, normalizer = data.get("pre_tokenizer") or {}, data.get("normalizer") or {}
    if pre.get("type") == "Metaspace" and not normalizer:
        return None, pre.get("prepend_scheme", "always") != "never"
    steps = normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else []
    kinds = [s.get("type") for s in steps]
    if not pre and kinds in (["Prepend", "Replace"], ["Replace"]):
        return None, kinds[0] == "Prepend"
    raise ExportError(
        f"byte-fallback BPE with pre-tokenizer {pre.get('type')} and normalizer "
        f"{normalizer.get('type')}: not the SentencePiece layout llama.cpp reads"
    )


def _tokens(vocab: dict, added: list, n_vocab: int, spm: bool):
    by_id: dict[int, tuple[str, int]] = {
        i: (t, BYTE if spm and _is_byte(t) else NORMAL) for t, i in vocab.items()
    }
    for token in added:
        kind = CONTROL if token.get("special") else USER_DEFINED
        by_id[int(token["id"])] = (token["content"], kind)
    if by_id and max(by_id) >= n_vocab:
        raise ExportError(
            f"the tokenizer has ids up to {max(by_id)} but the model embeds only {n_vocab} rows"
        )
    rows = [by_id.get(i, (f"[PAD{i}]", UNUSED)) for i in range(n_vocab)]
    if spm:
        rows = [(t, UNKNOWN) if t == "<unk>" and k == CONTROL else (t, k) for t, k in rows]
    return tuple(t for t, _ in rows), tuple(k for _, k in rows)


def _is_byte(token: str) -> bool:
    return len(token) == 6 and token.startswith("<0x") and token.endswith(">")


def _merge_scores(tokens: tuple[str, ...], merges: tuple[str, ...]) -> tuple[float, ...]:
    """llama.cpp's SentencePiece tokenizer merges the adjacent pair whose result
    scores highest; the Hugging Face BPE merges by rank. Scoring each token by
    minus the rank of the first merge that makes it gives the same order; tokens
    no merge makes score lowest, so they are never formed by merging."""
    rank: dict[str, int] = {}
    for position, merge in enumerate(merges):
        rank.setdefault(merge.replace(" ", "", 1), position)
    never = -float(len(merges) + 1)
    return tuple(-float(rank[t]) if t in rank else never for t in tokens)


def _added_specials(tokenizer) -> tuple[bool, bool]:
    """Whether encoding adds BOS / EOS, as the tokenizer itself does it."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = bos is not None and len(full) > len(plain) and full[0] == bos
    add_eos = eos is not None and len(full) > len(plain) and full[-1] == eos
    if len(full) - len(plain) != int(add_bos) + int(add_eos):
        raise ExportError(f"the tokenizer adds {full} around {plain}: not BOS/EOS alone")
    return add_bos, add_eos
