"""Planner targets: FLOPs per token, counted as PruneReport counts them."""

from __future__ import annotations

import pytest
import torch

import surgeon
from surgeon.plan.planner import (
    PlanOptions,
    block_flops,
    block_parameters,
    count_flops,
    flop_weights,
    make_plan,
)
from tests.zoo import HF_MODELS


@pytest.fixture(scope="module")
def llama():
    model = HF_MODELS["llama"]()
    return model, surgeon.analyze(model)


def _scores(analysis, kinds):
    generator = torch.Generator().manual_seed(0)
    return {
        g.id: torch.rand(g.size, generator=generator, dtype=torch.float64)
        for g in analysis.prunable
        if g.kind in kinds
    }


@pytest.mark.parametrize("allocation", ["uniform", "global", "adaptive"])
@pytest.mark.parametrize("flops_ratio", [0.2, 0.5])
@pytest.mark.parametrize("kinds", [("mlp",), ("mlp", "attention")])
def test_plans_hit_their_flop_target_within_one_unit_per_group(
    llama, allocation, flops_ratio, kinds
):
    model, analysis = llama
    weights = flop_weights(model)
    options = PlanOptions(flops_ratio=flops_ratio, kinds=kinds, allocation=allocation)
    plan = make_plan(analysis, _scores(analysis, kinds), options, flops=weights)
    pruned = surgeon.apply(model, plan, analysis=analysis)
    removed = count_flops(model) - count_flops(pruned)
    target = flops_ratio * block_flops(analysis, weights)
    groups = [g for g in analysis.prunable if g.kind in kinds]
    largest_unit = max(
        2 * g.params_covered / (g.kv_heads if g.kind == "attention" else g.size) for g in groups
    )
    assert removed <= target + 1e-6
    assert target - removed <= largest_unit * len(groups)


def test_a_flop_count_target_and_the_report_agree(llama):
    model, analysis = llama
    flops = count_flops(model) // 10
    result = surgeon.prune(model, criterion="magnitude", flops=flops, progress=False)
    report = result.report
    assert (
        report.flops_before
        == count_flops(model)
        == 2 * sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    )
    removed = report.flops_before - report.flops_after
    per_channel = 2 * 3 * 64  # gate, up and down rows/columns of one MLP channel
    assert flops - per_channel * 2 < removed <= flops


def test_fused_experts_count_top_k_of_their_experts():
    model = HF_MODELS["mixtral"]()
    weights = flop_weights(model)
    experts = [n for n, p in model.named_parameters() if p.dim() == 3]
    assert experts
    k, e = model.config.num_experts_per_tok, model.config.num_local_experts
    assert all(weights[n] == pytest.approx(2 * k / e) for n in experts)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"flops_ratio": 1.0}, "flops_ratio must be a number in \\[0, 1\\)"),
        ({"flops": -1}, "flops must be a non-negative int"),
        ({"flops": 0.5}, "flops must be a non-negative int"),
        ({"ratio": 0.2, "flops_ratio": 0.2}, "exactly one of"),
    ],
)
def test_bad_flop_targets_are_refused(bad, message):
    with pytest.raises(surgeon.InputError, match=message):
        PlanOptions(**bad)


def test_flop_targets_need_flop_weights(llama):
    model, analysis = llama
    with pytest.raises(surgeon.InputError, match="FLOP targets need flops="):
        make_plan(analysis, _scores(analysis, ("mlp",)), PlanOptions(flops_ratio=0.2))


def test_relative_allocation_refuses_standardised_scores_and_prune_passes_raw_ones(llama):
    model, analysis = llama
    scores = {k: v - 0.5 for k, v in _scores(analysis, ("mlp",)).items()}
    with pytest.raises(surgeon.InputError, match="relative' needs non-negative scores"):
        make_plan(analysis, scores, PlanOptions(ratio=0.2, allocation="relative"))
    ids = torch.randint(4, 128, (4, 16), generator=torch.Generator().manual_seed(1))
    result = surgeon.prune(
        model, 0.2, criterion="flap", calib=ids, allocation="relative", progress=False
    )
    assert set(result.report.criterion.values()) == {"flap"}
    assert result.report.params_after < result.report.params_before


def test_removed_layers_count_toward_the_target_and_keep_their_widths(llama):
    model, analysis = llama
    scores = _scores(analysis, ("mlp",))
    influence = {"model.layers.0": 0.9, "model.layers.1": 0.1}
    options = PlanOptions(ratio=0.6, layers=1, kinds=("mlp",), round_to=1)
    plan = make_plan(analysis, scores, options, block_scores=influence)
    assert plan.remove_blocks == ("model.layers.1",)
    assert set(plan.keep) == {"mlp@model.layers.0.mlp"}  # no widths cut in the removed layer
    layer = sum(
        m.weight.numel() for m in model.model.layers[1].modules() if isinstance(m, torch.nn.Linear)
    )
    group = analysis.group("mlp@model.layers.0.mlp")
    per_unit = group.params_covered / group.size
    removed = layer + (group.size - len(plan.keep[group.id])) * per_unit
    target = 0.6 * block_parameters(analysis)
    assert target - per_unit <= removed <= target
