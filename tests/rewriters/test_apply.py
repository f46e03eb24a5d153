"""Physical surgery on the whole zoo, checked against the masked original."""

from __future__ import annotations

import pytest
import torch
import transformers as hf
from torch import nn

import surgeon
from surgeon.rewriters.resolve import units_of
from tests.analyzers.test_capture import assert_unchanged, snapshot
from tests.rewriters.plans import padded_inputs, random_plan
from tests.zoo import DECODER, HF_MODELS, small_cnn

KINDS = [("attention",), ("mlp",), ("experts",), ("expert_mlp",)]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(HF_MODELS))
@pytest.mark.parametrize("seed", [0, 1])
def test_random_plans_over_every_kind_and_a_layer_match_the_masked_original(name, seed):
    model = HF_MODELS[name]()
    analysis = surgeon.analyze(model)
    removable = [b.name for b in analysis.blocks if b.removable]
    plan = surgeon.Plan(random_plan(analysis, seed), remove_blocks=tuple(removable[-1:]))
    pruned = surgeon.apply(model, plan, analysis=analysis)
    report = surgeon.verify(model, pruned, plan, inputs=padded_inputs(model), analysis=analysis)
    assert report.ok, str(report)
    assert report.max_rel <= 1e-5 and not report.inexact
    assert n_params(pruned) < n_params(model)


@pytest.mark.parametrize("name", ["llama", "qwen2", "phi3", "falcon", "mixtral", "gemma3"])
@pytest.mark.parametrize("cut", ["whole kv groups", "queries in every kv group"])
def test_gqa_heads_can_go_by_kv_group_or_by_query(name, cut):
    model = HF_MODELS[name]()
    analysis = surgeon.analyze(model)
    plan = {}
    for group in analysis.by_kind("attention"):
        kept = (
            {"kv": (1,), "q": (0, 1, 2, 3)}
            if cut == "whole kv groups"
            else {"kv": (0, 1), "q": (0, 3)}
        )
        plan[group.id] = units_of(kept, group)
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert surgeon.verify(model, pruned, plan, padded_inputs(model), analysis=analysis).ok
    layer = pruned.get_submodule(analysis.by_kind("attention")[0].modules[0].rpartition(".")[0])
    if hasattr(layer, "num_key_value_groups"):
        assert layer.num_key_value_groups == (4 if cut == "whole kv groups" else 2)


def test_a_hidden_cut_is_reported_as_not_exact_with_its_error():
    model = HF_MODELS["llama"]()
    plan = {"hidden": list(range(0, 64, 2))}
    pruned = surgeon.apply(model, plan)
    report = surgeon.verify(model, pruned, plan)
    assert list(report.inexact) == ["hidden"]
    assert report.inexact["hidden"] > 1e-3  # RMSNorm divides by the new width
    assert pruned.config.hidden_size == 32 and pruned.config.head_dim == 8
    assert pruned.model.layers[0].input_layernorm.weight.shape == (32,)


def test_channels_with_zero_weights_are_removed_with_equal_outputs():
    # Equal to float rounding, not bit for bit: a matrix product over 93 columns
    # sums in another order than over 96 with three zeros (MKL picks its blocking
    # by shape), 3e-8 apart on this machine.
    model = HF_MODELS["llama"]()
    dead = [3, 10, 50]
    with torch.no_grad():
        mlp = model.model.layers[0].mlp
        mlp.gate_proj.weight[dead] = 0
        mlp.up_proj.weight[dead] = 0
        mlp.down_proj.weight[:, dead] = 0
    pruned = surgeon.apply(
        model, {"mlp@model.layers.0.mlp": [i for i in range(96) if i not in dead]}
    )
    ids = torch.randint(0, 128, (2, 8))
    with torch.no_grad():
        difference = (model(ids).logits - pruned(ids).logits).abs().max().item()
    assert difference < 1e-6
    assert pruned.model.layers[0].mlp.down_proj.in_features == 93


def test_uniform_cuts_update_the_config_and_per_layer_ones_do_not():
    model = HF_MODELS["llama"]()
    analysis = surgeon.analyze(model)
    uniform = {g.id: list(range(48)) for g in analysis.by_kind("mlp")}
    assert surgeon.apply(model, uniform, analysis=analysis).config.intermediate_size == 48
    ragged = {"mlp@model.layers.0.mlp": list(range(48))}
    assert surgeon.apply(model, ragged, analysis=analysis).config.intermediate_size == 96


def test_depth_cut_renumbers_layers_and_updates_config():
    config = hf.Gemma3TextConfig(
        **DECODER, head_dim=8, sliding_window=4, layer_types=["sliding_attention", "full_attention"]
    )
    model = hf.Gemma3ForCausalLM(config).eval()
    pruned = surgeon.apply(model, surgeon.Plan(remove_blocks=("model.layers.0",)))
    assert len(pruned.model.layers) == 1 and pruned.config.num_hidden_layers == 1
    assert pruned.config.layer_types == ["full_attention"]
    assert pruned.model.layers[0].self_attn.layer_idx == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dtype_and_device_are_kept(dtype):
    model = HF_MODELS["mistral"]().to(dtype)
    analysis = surgeon.analyze(model)
    plan = random_plan(analysis, seed=3)
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert {p.dtype for p in pruned.parameters()} == {dtype}
    assert {p.device.type for p in pruned.parameters()} == {"cpu"}
    assert surgeon.verify(model, pruned, plan, analysis=analysis).ok


def test_inplace_cuts_the_given_model():
    model = HF_MODELS["llama"]()
    result = surgeon.apply(model, {"mlp@model.layers.1.mlp": [0, 1, 2]}, inplace=True)
    assert result is model and model.model.layers[1].mlp.up_proj.weight.shape == (3, 64)


def test_cnn_channels_depthwise_and_batch_norm_statistics():
    model, x = small_cnn(), torch.randn(2, 3, 16, 16)
    analysis = surgeon.analyze(model, x)
    plan = {"channels": [1, 4, 5, 9, 15], "channels#2": [0, 7], "channels#3": list(range(6))}
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert (pruned.dw.groups, pruned.dw.in_channels, pruned.bn.running_var.shape) == (5, 5, (5,))
    assert pruned.fuse.in_channels == 8
    assert surgeon.verify(model, pruned, plan, x, analysis=analysis).ok


class LiteralSplit(nn.Module):
    """Splits by sizes written in the code: a cut there cannot run."""

    def __init__(self):
        super().__init__()
        self.inp, self.out = nn.Linear(4, 6), nn.Linear(3, 2)

    def forward(self, x):
        a, b = torch.split(self.inp(x), [3, 3], dim=-1)
        return self.out(a * b)


def test_a_size_written_in_code_is_caught_and_the_model_is_left_alone():
    model, x = LiteralSplit().eval(), torch.randn(2, 4)
    analysis = surgeon.analyze(model, x)
    (group,) = analysis.prunable
    assert str(group.members[0].layout) == "[unit(3) | unit(3)]"
    before = snapshot(model)
    with pytest.raises(surgeon.RewriteError, match="Split sizes add up to 6.*model is unchanged"):
        surgeon.apply(model, {group.id: [0, 2]}, inplace=True, analysis=analysis)
    assert_unchanged(model, before)
    assert model.inp.out_features == 6


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_loses_heads_and_stays_exact(batch_first):
    mha = nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
    x = torch.randn(2, 5, 32) if batch_first else torch.randn(5, 2, 32)
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[1, :2] = True
    inputs = ((x, x, x), {"need_weights": False, "key_padding_mask": padding})
    analysis = surgeon.analyze(mha, inputs)
    plan = {"attention": [0, 2, 3]}
    pruned = surgeon.apply(mha, plan, analysis=analysis)
    assert (pruned.num_heads, pruned.in_proj_weight.shape, pruned.embed_dim) == (3, (72, 32), 32)
    assert type(mha) is nn.MultiheadAttention  # the original keeps its class
    assert surgeon.verify(mha, pruned, plan, inputs, analysis=analysis).ok


def test_multihead_attention_with_bias_kv_is_refused_with_the_reason():
    mha = nn.MultiheadAttention(32, 4, batch_first=True, add_bias_kv=True).eval()
    x = torch.randn(2, 5, 32)
    analysis = surgeon.analyze(mha, ((x, x, x), {"need_weights": False}))
    (group,) = [g for g in analysis.prunable if g.kind == "attention"]
    with pytest.raises(surgeon.RewriteError, match="add_bias_kv"):
        surgeon.apply(mha, {group.id: [0, 1]}, analysis=analysis)


def test_a_saved_plan_replayed_on_a_fresh_model_gives_the_same_weights():
    analysis = surgeon.analyze(HF_MODELS["qwen3_moe"]())
    plan = surgeon.Plan(random_plan(analysis, seed=5), remove_blocks=("model.layers.1",))
    first = surgeon.apply(HF_MODELS["qwen3_moe"](), surgeon.Plan.from_json(plan.to_json()))
    second = surgeon.apply(HF_MODELS["qwen3_moe"](), plan)
    assert first.state_dict().keys() == second.state_dict().keys()
    assert all(torch.equal(first.state_dict()[k], v) for k, v in second.state_dict().items())
