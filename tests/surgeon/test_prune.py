"""Criteria, calibration, planning and compensation."""

from __future__ import annotations

import pytest
import torch

import surgeon
from surgeon.calibrate.calibration import calibrate, token_batches
from surgeon.calibrate.criteria import CRITERIA, score_group
from surgeon.plan.planner import PlanOptions, block_parameters, make_plan
from surgeon.rewriters.compensate import refit_consumers
from tests.zoo import HF_MODELS

DEAD = 5
MLP = "mlp@model.layers.0.mlp"


def calibration_ids(n: int = 8, length: int = 16) -> torch.Tensor:
    return torch.randint(4, 128, (n, length), generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def planted():
    """A Llama whose MLP channel 5 in layer 0 is useless: zero weights in and out."""
    model = HF_MODELS["llama"]()
    with torch.no_grad():
        mlp = model.model.layers[0].mlp
        mlp.gate_proj.weight[DEAD] = 0
        mlp.up_proj.weight[DEAD] = 0
        mlp.down_proj.weight[:, DEAD] = 0
    analysis = surgeon.analyze(model)
    consumers = [m.module for g in analysis.prunable for m in g.members if m.dim == 1]
    stats = calibrate(
        model,
        token_batches(calibration_ids(), batch_size=4),
        gradients=True,
        gram_for=consumers,
        progress=False,
    )
    return model, analysis, stats


@pytest.mark.parametrize("criterion", sorted(set(CRITERIA) - {"random"}))
def test_every_criterion_ranks_a_planted_useless_channel_lowest(planted, criterion):
    model, analysis, stats = planted
    scores, used = score_group(model, analysis.group(MLP), criterion, stats)
    assert used == criterion
    assert scores.shape == (96,)
    assert scores[DEAD] == scores.min()
    assert (scores > scores[DEAD]).sum() >= 90


def test_calibration_collects_input_statistics_gradients_and_block_influence(planted):
    model, analysis, stats = planted
    down = stats.inputs["model.layers.0.mlp.down_proj"]
    assert down.count == 8 * 16 and down.squares.shape == (96,)
    assert down.squares[DEAD] == 0  # silu(0) * 0: the dead channel never fires
    assert stats.gradients["model.layers.0.mlp.up_proj.weight"].shape == (96, 64)
    blocks = calibrate(
        model, token_batches(calibration_ids()), blocks=["model.layers.0"], progress=False
    ).block_influence
    assert 0 < blocks["model.layers.0"] < 2


def test_attention_scores_follow_heads(planted):
    model, analysis, stats = planted
    scores, _ = score_group(
        model, analysis.group("attention@model.layers.1.self_attn"), "taylor", stats
    )
    assert scores.shape == (8,) and (scores > 0).all()


@pytest.mark.parametrize("allocation", ["uniform", "global", "adaptive", "relative"])
@pytest.mark.parametrize("ratio", [0.2, 0.5])
def test_plans_hit_their_parameter_target_within_one_unit_per_group(planted, allocation, ratio):
    model, analysis, stats = planted
    options = PlanOptions(ratio=ratio, kinds=("mlp",), allocation=allocation)
    groups = analysis.by_kind("mlp")
    scores = {g.id: score_group(model, g, "taylor", stats)[0] for g in groups}
    plan = make_plan(analysis, scores, options)
    per_unit = groups[0].params_covered / groups[0].size
    removed = sum((g.size - len(plan.keep.get(g.id, range(g.size)))) * per_unit for g in groups)
    target = ratio * block_parameters(analysis)
    assert removed <= target + 1e-6
    assert target - removed <= per_unit * len(groups)
    if allocation == "uniform":
        assert len({len(units) for units in plan.keep.values()}) == 1


def test_round_to_keeps_multiples(planted):
    model, analysis, stats = planted
    scores = {g.id: score_group(model, g, "taylor", stats)[0] for g in analysis.by_kind("mlp")}
    plan = make_plan(analysis, scores, PlanOptions(ratio=0.3, kinds=("mlp",), round_to=8))
    assert all(len(units) % 8 == 0 for units in plan.keep.values())


def test_kv_and_query_head_allocation_give_dense_grids(planted):
    model, analysis, stats = planted
    groups = analysis.by_kind("attention")
    scores = {g.id: score_group(model, g, "taylor", stats)[0] for g in groups}
    for heads in ("kv", "q"):
        options = PlanOptions(ratio=0.3, kinds=("attention",), heads=heads, allocation="uniform")
        plan = make_plan(analysis, scores, options)
        assert len(plan.keep) == 2
        for units in plan.keep.values():
            kv_kept = {u // 4 for u in units}
            q_kept = {u % 4 for u in units}
            assert len(units) == len(kv_kept) * len(q_kept)  # a dense grid
            if heads == "kv":
                assert len(kv_kept) == 1 and len(q_kept) == 4
            else:
                assert len(kv_kept) == 2 and len(q_kept) < 4
        surgeon.apply(model, plan, analysis=analysis)


def test_least_squares_refit_lowers_the_reconstruction_error(planted):
    model, analysis, _ = planted
    ids = calibration_ids(16, 16)
    stats = calibrate(
        model, token_batches(ids), gram_for=["model.layers.1.mlp.down_proj"], progress=False
    )
    plan = {"mlp@model.layers.1.mlp": list(range(0, 96, 2))}
    cut = surgeon.apply(model, plan, analysis=analysis)
    refit = surgeon.apply(model, plan, analysis=analysis)
    refitted = refit_consumers(model, refit, surgeon.Plan(plan), analysis, stats)
    assert refitted == ["model.layers.1.mlp.down_proj"]
    captured = {}
    handle = model.model.layers[1].mlp.down_proj.register_forward_pre_hook(
        lambda m, a: captured.setdefault("x", a[0])
    )
    with torch.no_grad():
        model(ids)
    handle.remove()
    x = captured["x"].reshape(-1, 96)
    target = x @ model.model.layers[1].mlp.down_proj.weight.T
    kept = x[:, ::2]

    def error(weight):
        return float((kept @ weight.T - target).norm())

    optimum = torch.linalg.lstsq(kept.double(), target.double()).solution.T.float()
    refit_error = error(refit.model.layers[1].mlp.down_proj.weight)
    assert refit_error < error(cut.model.layers[1].mlp.down_proj.weight)
    assert refit_error <= 1.05 * error(optimum)  # the damped least-squares solution


def test_prune_in_one_call_reports_params_flops_and_verification():
    model = HF_MODELS["llama"]()
    result = surgeon.prune(
        model, 0.2, criterion="wanda-sp", calib=calibration_ids(), kinds=("mlp",), progress=False
    )
    report = result.report
    assert report.params_after < report.params_before
    assert report.flops_after < report.flops_before
    assert report.verification.ok
    assert set(report.criterion.values()) == {"wanda-sp"}
    assert result.model.model.layers[0].mlp.up_proj.out_features < 96


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"ratio": 1.5}, "ratio must be a number in \\[0, 1\\)"),
        ({"ratio": "0.2"}, "ratio must be a number"),
        ({"ratio": True}, "ratio must be a number"),
        ({"ratio": -0.1}, "ratio must be a number"),
        ({"ratio": 0.2, "params": 10}, "exactly one of"),
        ({"params": -3}, "params must be a non-negative int"),
        ({"ratio": 0.2, "allocation": "best"}, "allocation must be one of"),
        ({"ratio": 0.2, "round_to": 0}, "round_to must be a positive int"),
        ({"ratio": 0.2, "kinds": ("neurons",)}, r"kinds must be one of .*, not 'neurons'"),
    ],
)
def test_bad_ratios_and_options_are_refused(bad, message):
    with pytest.raises(surgeon.InputError, match=message):
        PlanOptions(**bad)


def test_prune_refuses_unknown_criteria_and_missing_calibration():
    model = HF_MODELS["llama"]()
    with pytest.raises(surgeon.InputError, match=r"criterion must be one of .*, not 'best'"):
        surgeon.prune(model, 0.2, criterion="best")
    with pytest.raises(surgeon.InputError, match="needs calib"):
        surgeon.prune(model, 0.2, criterion="taylor")


def test_a_tied_lm_head_counts_in_the_flops_and_prune_runs():
    model = HF_MODELS["gemma3"]()
    assert model.lm_head.weight is model.get_input_embeddings().weight
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    result = surgeon.prune(model, 0.2, criterion="magnitude", progress=False)
    assert result.report.flops_before == 2 * linear
    assert result.report.flops_after < result.report.flops_before
    assert result.report.verification.ok
