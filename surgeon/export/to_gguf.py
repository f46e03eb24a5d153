"""Write a (cut) Llama-family model as a GGUF file that llama.cpp runs.

llama.cpp's ``llama`` graph sizes every layer's tensors from layer 0's head
count and MLP width (its loader reads per-layer arrays, its tensor shapes do
not), so a ragged cut goes to its ``deci`` graph, the one made for NVIDIA's
heterogeneous Llamas: per-layer query heads, KV heads and MLP widths. Uniform
cuts keep the ``llama`` graph (``qwen3`` for q/k-normed layers), which every
GGUF runtime knows. Removed layers are simply absent: the file is renumbered.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from surgeon.errors import InputError
from surgeon.export.decoder import DecoderShape, ExportError, describe
from surgeon.export.gguf_check import PROMPT, llama_cpp_gap, tolerance
from surgeon.export.gguf_vocab import load_tokenizer, vocab_of, write_vocab

__all__ = ["DTYPES", "GgufExport", "gguf"]

DTYPES = ("f32", "f16", "bf16")
ROTATED = ("q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias")


@dataclass(frozen=True)
class GgufExport:
    """What was written: the file, llama.cpp's architecture for it, the layers."""

    path: Path
    architecture: str
    dtype: str
    shape: DecoderShape
    parameters: int
    gap: float | None  # llama.cpp vs PyTorch, last-token logits; None: not run

    def __str__(self) -> str:
        widths = sorted({layer.ffn for layer in self.shape.layers})
        checked = (
            "not checked: llama-cpp-python is not installed (pip install 'fx-surgeon[export]')"
            if self.gap is None
            else f"llama.cpp matches PyTorch: last-token logits {self.gap:.1e} apart (relative)"
        )
        return (
            f"{self.path}: {self.architecture}, {len(self.shape.layers)} layers, "
            f"MLP widths {widths[0]}-{widths[-1]}, {self.parameters:,} parameters, "
            f"{self.dtype}\n{checked}"
        )


def gguf(
    model: nn.Module,
    path: str | Path,
    dtype: str = "f16",
    tokenizer: Any = None,
    check: bool = True,
) -> GgufExport:
    """Write ``model`` (a transformers Llama, Mistral, Qwen2 or Qwen3 causal LM,
    cut or not) to ``path`` for llama.cpp. ``tokenizer`` is a transformers
    tokenizer or its directory; by default the model's own directory. With
    ``check`` (and llama-cpp-python installed) the file is run in llama.cpp on a
    short prompt and must give PyTorch's last-token logits within
    :data:`~surgeon.export.gguf_check.TOLERANCE`. Raises :class:`ExportError`
    for what llama.cpp cannot express or computes differently; nothing is
    written then."""
    import gguf as gguf_lib

    if dtype not in DTYPES:
        raise InputError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    shape = describe(model)
    architecture = _architecture(shape)
    tokenizer = load_tokenizer(tokenizer if tokenizer is not None else _own_tokenizer(model))
    vocab = vocab_of(tokenizer, shape.vocab)
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    writer = gguf_lib.GGUFWriter(str(partial), architecture)
    try:
        _write_hyperparameters(writer, shape, dtype, type(model).__name__)
        write_vocab(writer, vocab)
        for name, array, raw in _tensors(model, shape, architecture, dtype):
            writer.add_tensor(name, array, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        gap = _checked(model, partial, tokenizer, dtype) if check else None
        os.replace(partial, path)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    parameters = sum(p.numel() for p in model.parameters())
    return GgufExport(path, architecture, dtype, shape, parameters, gap)


def _checked(model: nn.Module, path: Path, tokenizer: Any, dtype: str) -> float | None:
    gap = llama_cpp_gap(model, path, list(tokenizer(PROMPT)["input_ids"]))
    limit = tolerance(model, dtype)
    if gap is not None and not gap <= limit:
        raise ExportError(
            f"llama.cpp runs the written file {gap:.2g} apart from PyTorch (last-token "
            f"logits, relative; {dtype} allows {limit:g}): not written. Please report it "
            "with the model's config"
        )
    return gap


def _architecture(shape: DecoderShape) -> str:
    if not shape.default_scale:
        raise ExportError(
            f"attention scale {shape.attention_scale:.6g} is not 1/sqrt(head_dim); llama.cpp's "
            "llama, deci and qwen3 graphs always use 1/sqrt(head_dim)"
        )
    if shape.qk_norm and shape.rope_factors is not None:
        raise ExportError("llama.cpp's qwen3 graph takes no RoPE frequency factors")
    if not shape.ragged:
        return "qwen3" if shape.qk_norm else "llama"
    if shape.qk_norm:
        raise ExportError(
            "layers differ in width, which needs llama.cpp's deci graph, and it has no "
            "per-head q/k RMSNorm (q_norm/k_norm): cut every layer alike for Qwen3"
        )
    return "deci"


def _own_tokenizer(model: nn.Module) -> str:
    source = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    if source and Path(source, "tokenizer.json").is_file():
        return source
    raise ExportError(
        "no tokenizer: pass tokenizer= (a transformers tokenizer or its directory); "
        f"the model's own directory {source!r} holds no tokenizer.json"
    )


def _write_hyperparameters(writer, shape: DecoderShape, dtype: str, name: str) -> None:
    import gguf as gguf_lib

    layers = shape.layers
    per_layer = shape.ragged
    column = lambda field: (  # noqa: E731
        [getattr(layer, field) for layer in layers] if per_layer else getattr(layers[0], field)
    )
    writer.add_name(name)
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(len(layers))
    writer.add_feed_forward_length(column("ffn"))
    writer.add_head_count(column("heads"))
    writer.add_head_count_kv(column("kv_heads"))
    writer.add_key_length(shape.head_dim)
    writer.add_value_length(shape.head_dim)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_vocab_size(shape.vocab)
    file_types = {
        "f32": gguf_lib.LlamaFileType.ALL_F32,
        "f16": gguf_lib.LlamaFileType.MOSTLY_F16,
        "bf16": gguf_lib.LlamaFileType.MOSTLY_BF16,
    }
    writer.add_file_type(file_types[dtype])


def _tensors(
    model: nn.Module, shape: DecoderShape, architecture: str, dtype: str
) -> Iterator[tuple[str, np.ndarray, Any]]:
    """(GGUF name, array, raw GGML type or None) for every tensor llama.cpp loads."""
    import gguf as gguf_lib

    arch = next(a for a, n in gguf_lib.MODEL_ARCH_NAMES.items() if n == architecture)
    names = gguf_lib.get_tensor_name_map(arch, len(shape.layers))
    interleave = architecture in ("llama", "deci")  # their RoPE rotates adjacent pairs
    for key, tensor in model.state_dict().items():
        if shape.tied and key == "lm_head.weight":
            continue
        if key.endswith("rotary_emb.inv_freq"):
            continue
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"{key}: no GGUF tensor name in llama.cpp's {architecture} graph")
        data = tensor.detach().to(torch.float32).cpu()
        if interleave and key.endswith(ROTATED):
            data = _pairs_adjacent(data, data.shape[0] // shape.head_dim)
        yield (name, *_encoded(data.numpy(), dtype))
    if shape.rope_factors is not None:
        rope = gguf_lib.TENSOR_NAMES[gguf_lib.MODEL_TENSOR.ROPE_FREQS] + ".weight"
        yield rope, np.asarray(shape.rope_factors, dtype=np.float32), None


def _pairs_adjacent(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Reorder query/key rows from Hugging Face's rotate-half RoPE layout (pair
    i with i + d/2) to llama.cpp's adjacent pairs (2i with 2i+1)."""
    rest = weight.shape[1:]
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *rest)
        .transpose(1, 2)
        .reshape(weight.shape)
    )


def _encoded(array: np.ndarray, dtype: str) -> tuple[np.ndarray, Any]:
    """Matrices in the chosen dtype; norms, biases and vectors stay f32 as
    llama.cpp expects them."""
    import gguf as gguf_lib

    if array.ndim < 2 or dtype == "f32":
        return np.ascontiguousarray(array, dtype=np.float32), None
    if dtype == "f16":
        return np.ascontiguousarray(array, dtype=np.float16), None
    bf16 = gguf_lib.GGMLQuantizationType.BF16
    return gguf_lib.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), bf16), bf16
