"""DeciLM (nemotron-nas) checkpoints: block_configs checked against NVIDIA's
published schema and the width formula its readers (vLLM, SGLang, TensorRT-LLM,
the remote code) apply. vLLM itself is not run here: it needs a GPU."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

import surgeon
from surgeon.export import ExportError, decilm
from surgeon.export.deci_config import ffn_width
from tests.export.families import build

# NVIDIA's block_config.py (shipped with the Nemotron-NAS checkpoints): the
# fields of each subblock; readers warn about and drop any other field.
ATTENTION_FIELDS = {
    "no_op": bool,
    "replace_with_linear": bool,
    "sparsify": (list, type(None)),
    "n_heads_in_group": (int, type(None)),
    "window_length": (int, type(None)),
    "num_sink_tokens": (int, type(None)),
    "use_prefill_window_in_sink_attention": bool,
    "unshifted_sink": bool,
}
FFN_FIELDS = {
    "no_op": bool,
    "replace_with_linear": bool,
    "sparsify": (list, type(None)),
    "ffn_mult": (float, type(None)),
}


def reader_width(ffn_mult: float, hidden: int) -> int:
    """The published reader's formula, restated: int(2 * mult * hidden / 3)
    rounded up to a multiple of 256."""
    width = int(2 * ffn_mult * hidden / 3)
    return width if width % 256 == 0 else width + 256 - width % 256


def ragged_cut(**config):
    model = build("llama", intermediate_size=768, num_hidden_layers=4, **config)
    analysis = surgeon.analyze(model)
    mlps = analysis.by_kind("mlp")
    keep = {mlps[0].id: list(range(512)), mlps[1].id: list(range(0, 768, 3))}
    plan = surgeon.Plan.for_analysis(analysis, keep=keep, remove_blocks=("model.layers.2",))
    return surgeon.apply(model, plan, analysis=analysis)


def test_block_configs_follow_the_published_schema_and_rebuild_the_weights(tmp_path):
    model = ragged_cut()
    decilm(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["DeciLMForCausalLM"]
    assert config["model_type"] == "nemotron-nas"
    assert config["num_hidden_layers"] == len(config["block_configs"]) == 3
    weights = load_file(str(tmp_path / "model.safetensors"))
    hidden, heads, head_dim = config["hidden_size"], config["num_attention_heads"], 16
    widths = []
    for index, block in enumerate(config["block_configs"]):
        assert set(block) == {"attention", "ffn"}
        for fields, sub in ((ATTENTION_FIELDS, block["attention"]), (FFN_FIELDS, block["ffn"])):
            assert set(sub) <= set(fields)
            assert all(isinstance(value, fields[key]) for key, value in sub.items())
        assert round(block["ffn"]["ffn_mult"], 6) == block["ffn"]["ffn_mult"]
        width = reader_width(block["ffn"]["ffn_mult"], hidden)
        kv_heads = heads // block["attention"]["n_heads_in_group"]
        prefix = f"model.layers.{index}"
        assert weights[f"{prefix}.mlp.up_proj.weight"].shape == (width, hidden)
        assert weights[f"{prefix}.mlp.down_proj.weight"].shape == (hidden, width)
        assert weights[f"{prefix}.self_attn.q_proj.weight"].shape == (heads * head_dim, hidden)
        assert weights[f"{prefix}.self_attn.k_proj.weight"].shape == (kv_heads * head_dim, hidden)
        widths.append(width)
    assert widths == [512, 256, 768]
    assert set(weights) == set(model.state_dict())


def test_the_library_uses_the_readers_formula():
    for hidden in (64, 384, 4096, 8192):
        for width in range(256, 40000, 256):
            assert ffn_width(round(1.5 * width / hidden, 6), hidden) == width


def test_per_layer_query_heads_are_refused(tmp_path):
    model = build("llama", intermediate_size=512)
    analysis = surgeon.analyze(model)
    attention = analysis.group("attention@model.layers.0.self_attn")
    plan = surgeon.Plan.for_analysis(analysis, keep={attention.id: list(range(attention.q_per_kv))})
    with pytest.raises(ExportError, match="query heads differ"):
        decilm(surgeon.apply(model, plan, analysis=analysis), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_widths_ffn_mult_cannot_express_are_refused(tmp_path):
    model = build("llama", intermediate_size=512)
    analysis = surgeon.analyze(model)
    plan = surgeon.Plan.for_analysis(analysis, keep={"mlp@model.layers.0.mlp": list(range(300))})
    with pytest.raises(ExportError, match="300 is not a multiple of 256.*round_to=256"):
        decilm(surgeon.apply(model, plan, analysis=analysis), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_biases_and_qk_norms_are_refused(tmp_path):
    for family in ("qwen2", "qwen3"):
        with pytest.raises(ExportError, match="plain Llama layers"):
            decilm(build(family, intermediate_size=512), tmp_path / family)
    assert not list(tmp_path.iterdir())
