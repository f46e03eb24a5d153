"""NVIDIA's heterogeneous Llama config (DeciLM, ``model_type`` "nemotron-nas"):
``block_configs``, one entry per layer, which vLLM, SGLang and TensorRT-LLM
read to build layers of different shapes.

The published schema (NVIDIA's ``block_config.py``, shipped with the
Nemotron-NAS checkpoints as remote code) gives each layer
``attention.n_heads_in_group`` (query heads per KV head; every layer has the
config's ``num_attention_heads`` query heads) and ``ffn.ffn_mult``, from which
readers compute the MLP width as ``ceil256(int(2 * ffn_mult * hidden / 3))``.
So per-layer KV heads and MLP widths that are multiples of 256 are expressible;
per-layer query heads and other widths are refused. Removed layers are simply
absent (the checkpoint is renumbered). None of this is run here: vLLM needs a
GPU, so the output is checked against the schema and the readers' formula.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from surgeon.export.decoder import DecoderShape, ExportError, describe

__all__ = ["block_configs", "decilm", "decilm_config", "ffn_width"]

FFN_MULTIPLE = 256
DECILM_AUTO_MAP = {
    "AutoConfig": "configuration_decilm.DeciLMConfig",
    "AutoModelForCausalLM": "modeling_decilm.DeciLMForCausalLM",
}


def ffn_width(ffn_mult: float, hidden: int) -> int:
    """The MLP width DeciLM readers build for ``ffn_mult`` (their formula)."""
    width = int(2 * ffn_mult * hidden / 3)
    return -(-width // FFN_MULTIPLE) * FFN_MULTIPLE


def block_configs(shape: DecoderShape) -> list[dict[str, Any]]:
    """One DeciLM block config per layer of ``shape``; :class:`ExportError` when
    the layers need what the schema cannot say."""
    heads = {layer.heads for layer in shape.layers}
    if len(heads) > 1:
        raise ExportError(
            f"query heads differ between layers ({sorted(heads)}); DeciLM gives every layer "
            "num_attention_heads query heads (it varies only how many share a KV head), and "
            "removing a KV group removes its queries: cut attention alike in every layer for "
            "DeciLM, or export GGUF"
        )
    blocks = []
    for index, layer in enumerate(shape.layers):
        mult = round(1.5 * layer.ffn / shape.hidden, 6)
        if ffn_width(mult, shape.hidden) != layer.ffn:
            raise ExportError(
                f"model.layers.{index}.mlp: width {layer.ffn} is not a multiple of "
                f"{FFN_MULTIPLE}, the only widths DeciLM's ffn_mult expresses; cut with "
                f"round_to={FFN_MULTIPLE} (--round-to {FFN_MULTIPLE}) or export GGUF"
            )
        blocks.append(
            {
                "attention": {"no_op": False, "n_heads_in_group": layer.heads // layer.kv_heads},
                "ffn": {"no_op": False, "ffn_mult": mult},
            }
        )
    return blocks


def decilm_config(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` of ``model`` as a DeciLM (``nemotron-nas``) checkpoint."""
    shape = describe(model)
    if shape.qk_norm or shape.biases:
        raise ExportError(
            "DeciLM layers are plain Llama layers: no q/k norms and no projection biases "
            f"(found {'q_norm/k_norm' if shape.qk_norm else ', '.join(shape.biases)})"
        )
    config = model.config.to_dict()
    config.pop("per_layer_config", None)
    for key in ("intermediate_size", "num_key_value_heads", "layer_types", "sliding_window"):
        config.pop(key, None)
    config.update(
        architectures=["DeciLMForCausalLM"],
        model_type="nemotron-nas",
        auto_map=dict(DECILM_AUTO_MAP),
        num_hidden_layers=len(shape.layers),
        num_attention_heads=shape.layers[0].heads,
        head_dim=shape.head_dim,
        hidden_size=shape.hidden,
        vocab_size=shape.vocab,
        tie_word_embeddings=shape.tied,
        block_configs=block_configs(shape),
    )
    rope = dict(config.get("rope_parameters") or {})  # transformers 5 spelling
    config.setdefault("rope_theta", rope.pop("rope_theta", shape.rope_theta))
    if rope.get("rope_type", "default") != "default":
        config.setdefault("rope_scaling", rope)  # the spelling DeciLM's remote code reads
    return config


def decilm(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` as a DeciLM checkpoint: ``config.json`` with
    ``block_configs`` and the weights under their Llama names. Serving it needs
    NVIDIA's remote code files (``configuration_decilm.py`` and
    ``modeling_decilm.py`` with their imports) from a Nemotron-NAS checkpoint
    beside it; vLLM's own DeciLM model class reads the weights."""
    from safetensors.torch import save_file

    config = decilm_config(model)  # refuses before anything is written
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().contiguous()
        for k, v in model.state_dict().items()
        if not (config["tie_word_embeddings"] and k == "lm_head.weight")
    }
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return path
