"""save(format="per_layer_config"): a config.json with transformers' per-layer
overrides, written only where the model class builds its layers from them."""

from __future__ import annotations

import json

import pytest
import torch
import transformers as hf
from transformers.models.step3p7 import configuration_step3p7, modeling_step3p7

import surgeon
from surgeon.export import ExportError
from tests.export.families import build, cut

STEP = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    mlp_layer_types=["dense"] * 3,
    layer_types=["full_attention"] * 3,
    sliding_window=16,
)


def step_model():
    """Step-3.7's text decoder builds each attention from config.per_layer_config[i]."""
    torch.manual_seed(0)
    config = configuration_step3p7.Step3p7TextConfig(**STEP)
    return modeling_step3p7.Step3p7TextModel(config).eval()


def test_per_layer_heads_reload_with_plain_from_pretrained(tmp_path):
    model = step_model()
    analysis = surgeon.analyze(model)
    keep = {"attention@layers.1.self_attn": [2, 3], "attention@layers.2.self_attn": [0, 2]}
    plan = surgeon.Plan.for_analysis(analysis, keep=keep)
    pruned = surgeon.apply(model, plan, analysis=analysis)
    surgeon.save(pruned, tmp_path, format="per_layer_config")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["per_layer_config"] == {
        "1": {"num_attention_heads": 2, "num_key_value_heads": 1},
        "2": {"num_attention_heads": 2},
    }
    assert json.loads((tmp_path / "surgeon.json").read_text())["plain_from_pretrained"]
    plain = modeling_step3p7.Step3p7TextModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 256, (2, 9))
    with torch.no_grad():
        assert torch.equal(plain(ids).last_hidden_state, pruned(ids).last_hidden_state)
    assert surgeon.load(tmp_path).state_dict().keys() == pruned.state_dict().keys()


def test_a_width_the_class_reads_globally_is_refused_naming_it(tmp_path):
    model = step_model()
    analysis = surgeon.analyze(model)
    plan = surgeon.Plan.for_analysis(analysis, keep={"mlp@layers.0.mlp": list(range(64))})
    pruned = surgeon.apply(model, plan, analysis=analysis)
    target = tmp_path / "out"
    with pytest.raises(ExportError, match="does not build .*'intermediate_size' is a per-layer"):
        surgeon.save(pruned, target, format="per_layer_config")
    assert not target.exists()


def test_llama_builds_every_layer_from_the_global_config_so_ragged_is_refused(tmp_path):
    ragged = cut(build("llama"), ragged=True)
    with pytest.raises(ExportError, match="per_layer_config"):
        surgeon.save(ragged, tmp_path / "out", format="per_layer_config")
    assert not (tmp_path / "out").exists()


def test_a_uniform_llama_cut_needs_no_overrides(tmp_path):
    uniform = cut(build("llama"), ragged=False)
    surgeon.save(uniform, tmp_path, format="per_layer_config")
    assert json.loads((tmp_path / "config.json").read_text()).get("per_layer_config") in (None, {})
    plain = hf.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 8192, (1, 6))
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, uniform(ids).logits)


def test_an_unknown_format_is_refused(tmp_path):
    with pytest.raises(surgeon.SurgeonError, match="per_layer_config"):
        surgeon.save(build("llama"), tmp_path, format="onnx")
