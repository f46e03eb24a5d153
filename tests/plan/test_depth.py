"""layers="auto": how many whole blocks the decode-time estimate removes, and
that the planner and prune act on it."""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers as hf

import surgeon
from surgeon.plan.depth import BLOCK_OVERHEAD, SPEED_EFFICIENCY, choose_depth
from surgeon.plan.planner import PlanOptions, block_parameters, make_plan, planned_depth
from surgeon.shapes import LLAMA3_8B

SMALL = dict(LLAMA3_8B, hidden_size=64, intermediate_size=128, num_hidden_layers=8)
SMALL.update(num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=128)


@pytest.fixture(scope="module")
def llama3_8b():
    with torch.device("meta"):
        model = hf.LlamaForCausalLM(hf.LlamaConfig(**LLAMA3_8B))
    return surgeon.analyze(model)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = hf.LlamaForCausalLM(hf.LlamaConfig(**SMALL)).eval()
    return model, surgeon.analyze(model)


def _cut(analysis, ratio, overhead=BLOCK_OVERHEAD):
    return choose_depth(analysis, ratio * block_parameters(analysis), ("mlp",), overhead)


def test_model_size_counts_what_a_decode_step_reads(llama3_8b):
    size = llama3_8b.size
    assert size.generates
    assert size.params == 8_030_261_248
    # every Linear weight, lm_head included; the embedding table is a gather
    assert size.reads == size.params - 128256 * 4096 - 4096 * (2 * 32 + 1)


def test_widths_alone_are_kept_where_they_keep_speed_in_step(llama3_8b):
    choice = _cut(llama3_8b, 0.2)
    assert choice.layers == 0
    assert choice.efficiency == choice.width_only >= SPEED_EFFICIENCY
    assert round(choice.width_only, 2) == 0.93  # measured on an H100: 0.92 (eager)


def test_at_half_the_blocks_go_up_to_the_depth_share(llama3_8b):
    choice = _cut(llama3_8b, 0.5)
    assert round(choice.width_only, 2) == 0.77  # measured on an H100: 0.77 (eager)
    assert choice.layers == choice.limit == 8  # half of the 50% target: 8 of 32 blocks
    assert choice.efficiency > choice.width_only
    assert "8 whole blocks" in str(choice)


def test_the_fewest_blocks_that_reach_the_wanted_efficiency_are_taken(llama3_8b):
    choice = _cut(llama3_8b, 0.5, overhead=106_000_000)  # torch.compile's fitted overhead
    assert choice.layers == 6 < choice.limit
    assert choice.efficiency >= SPEED_EFFICIENCY
    assert _cut(llama3_8b, 0.5, overhead=0).layers == 0  # no fixed cost: widths suffice


def test_no_estimate_for_models_that_do_not_decode():
    torch.manual_seed(0)
    encoder = hf.LlamaModel(hf.LlamaConfig(**SMALL)).eval()
    choice = _cut(surgeon.analyze(encoder), 0.5)
    assert choice.layers == 0 and "not a generative model" in str(choice)


def test_mixtral_experts_count_only_the_routed_share():
    config = hf.MixtralConfig(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, vocab_size=128, num_local_experts=4,
        num_experts_per_tok=2,
    )  # fmt: skip
    torch.manual_seed(0)
    analysis = surgeon.analyze(hf.MixtralForCausalLM(config).eval())
    fractions = {
        name: share for name, share in analysis.size.read_fraction.items() if "experts" in name
    }
    assert fractions and set(fractions.values()) == {0.5}


def test_layers_option_is_checked():
    for bad in ("deep", -1, True, 1.5):
        with pytest.raises(surgeon.InputError, match="layers must be a non-negative int or 'auto'"):
            PlanOptions(ratio=0.2, layers=bad)
    with pytest.raises(surgeon.InputError, match="give exactly one of"):
        PlanOptions()  # 'auto' is no target
    with pytest.raises(surgeon.InputError, match="block_overhead"):
        PlanOptions(ratio=0.2, block_overhead=-5)


def _scores(analysis):
    generator = torch.Generator().manual_seed(0)
    return {g.id: torch.rand(g.size, generator=generator) for g in analysis.prunable}


def test_planner_removes_the_chosen_blocks_with_the_lowest_influence(small):
    _, analysis = small
    options = PlanOptions(ratio=0.5, layers="auto")
    choice = planned_depth(analysis, options)
    assert choice.layers == 2  # a tiny model is all fixed cost: the depth share decides
    influence = {f"model.layers.{i}": float(abs(i - 5)) for i in range(8)}
    plan = make_plan(analysis, _scores(analysis), options, block_scores=influence)
    assert plan.remove_blocks == ("model.layers.5", "model.layers.4")
    assert not any(".layers.5." in g or ".layers.4." in g for g in plan.keep)


def test_without_block_scores_auto_warns_and_cuts_widths_only(small):
    _, analysis = small
    with pytest.warns(UserWarning, match="no block scores were given, so only widths are cut"):
        plan = make_plan(analysis, _scores(analysis), PlanOptions(ratio=0.5, layers="auto"))
    assert plan.remove_blocks == ()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = make_plan(analysis, _scores(analysis), PlanOptions(ratio=0.5, layers=0))
    assert plan.remove_blocks == ()


def test_prune_calibrates_block_influence_when_auto_wants_blocks(small):
    model, _ = small
    ids = torch.randint(4, 128, (4, 16), generator=torch.Generator().manual_seed(1))
    result = surgeon.prune(model, 0.5, criterion="flap", calib=ids, progress=False, layers="auto")
    assert len(result.plan.remove_blocks) == 2
    assert result.model.config.num_hidden_layers == 6
    assert result.report.depth.startswith("layers='auto': 2 whole blocks")
    assert "layers='auto'" in str(result.report)
    with pytest.warns(UserWarning, match="no block scores"):
        weight_only = surgeon.prune(
            model, 0.5, criterion="magnitude", progress=False, layers="auto"
        )
    assert weight_only.plan.remove_blocks == ()
    assert "not applied" in weight_only.report.depth
