"""Compensation after a cut: FLAP's bias shift, the least-squares refit, both."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import surgeon
from surgeon.calibrate.calibration import calibrate, token_batches
from surgeon.rewriters.compensate import compensate_consumers
from tests.zoo import HF_MODELS

DOWN = "model.layers.1.mlp.down_proj"
PLAN = {"mlp@model.layers.1.mlp": list(range(0, 96, 2))}


def calibration_ids(n: int = 16, length: int = 16) -> torch.Tensor:
    return torch.randint(4, 128, (n, length), generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def calibrated():
    model = HF_MODELS["llama"]()
    analysis = surgeon.analyze(model)
    ids = calibration_ids()
    stats = calibrate(model, token_batches(ids), gram_for=[DOWN], progress=False)
    captured = {}
    handle = model.get_submodule(DOWN).register_forward_pre_hook(
        lambda m, a: captured.setdefault("x", a[0])
    )
    with torch.no_grad():
        model(ids)
    handle.remove()
    return model, analysis, stats, captured["x"].reshape(-1, 96)


def _error(module: nn.Linear, x: torch.Tensor, target: torch.Tensor) -> float:
    with torch.no_grad():
        return float((module(x[:, ::2]) - target).norm())


@pytest.mark.parametrize("method", ["bias", "refit", "refit+bias"])
def test_compensation_lowers_the_calibration_reconstruction_error(calibrated, method):
    model, analysis, stats, x = calibrated
    with torch.no_grad():
        target = model.get_submodule(DOWN)(x)
    cut = surgeon.apply(model, PLAN, analysis=analysis)
    fixed = surgeon.apply(model, PLAN, analysis=analysis)
    done = compensate_consumers(model, fixed, surgeon.Plan(PLAN), analysis, stats, method)
    assert done == [DOWN]
    assert (fixed.get_submodule(DOWN).bias is not None) == ("bias" in method)
    errors = {
        "none": _error(cut.get_submodule(DOWN), x, target),
        method: _error(fixed.get_submodule(DOWN), x, target),
    }
    assert errors[method] < 0.99 * errors["none"]
    if method == "refit":  # the damped least-squares solution, close to the optimum
        optimum = torch.linalg.lstsq(x[:, ::2].double(), target.double()).solution.T
        best = float((x[:, ::2].double() @ optimum.T - target.double()).norm())
        assert errors[method] <= 1.05 * best


def test_refit_with_a_bias_is_at_least_as_good_as_either_alone(calibrated):
    model, analysis, stats, x = calibrated
    with torch.no_grad():
        target = model.get_submodule(DOWN)(x)
    errors = {}
    for method in ("bias", "refit", "refit+bias"):
        fixed = surgeon.apply(model, PLAN, analysis=analysis)
        compensate_consumers(model, fixed, surgeon.Plan(PLAN), analysis, stats, method, damp=0)
        errors[method] = _error(fixed.get_submodule(DOWN), x, target)
    assert errors["refit+bias"] <= 1.0001 * min(errors["bias"], errors["refit"])


@pytest.mark.parametrize(
    "kinds, flag, covered",
    [
        (("mlp",), "mlp_bias", "mlp.gate_proj"),
        (("attention",), "attention_bias", "self_attn.q_proj"),
    ],
)
def test_a_bias_added_by_compensation_is_declared_in_the_config_and_reloads(
    tmp_path, kinds, flag, covered
):
    model = HF_MODELS["llama"]()
    result = surgeon.prune(
        model,
        0.3,
        criterion="flap",
        calib=calibration_ids(),
        compensate="bias",
        kinds=kinds,
        progress=False,
    )
    pruned = result.model
    assert getattr(pruned.config, flag) and not getattr(model.config, flag)
    layer = pruned.model.layers[0]
    assert layer.get_submodule(covered).bias is not None  # the flag covers its whole family
    assert "bias compensation" in result.report.compensation
    surgeon.save(pruned, tmp_path)
    reloaded = surgeon.load(tmp_path)
    ids = calibration_ids(2)
    with torch.no_grad():
        assert torch.equal(pruned(ids).logits, reloaded(ids).logits)


def test_bias_compensation_is_refused_where_no_bias_can_be_declared():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4, bias=False))
    ids = torch.randn(32, 8)
    analysis = surgeon.analyze(model, (ids[:2],))
    group = next(g for g in analysis.prunable if "1.weight" not in g.members[0].param)
    stats = calibrate_plain(model, ids)
    plan = {group.id: list(range(8))}
    pruned = surgeon.apply(model, plan, analysis=analysis)
    with pytest.raises(surgeon.InputError, match="compensate='bias'.*has no config"):
        compensate_consumers(model, pruned, surgeon.Plan(plan), analysis, stats, "bias")
    with pytest.raises(surgeon.InputError, match="compensate must be one of"):
        compensate_consumers(model, pruned, surgeon.Plan(plan), analysis, stats, "mean")


def calibrate_plain(model: nn.Module, x: torch.Tensor):
    """Input statistics of every Linear of a plain module (calibrate() feeds token ids)."""
    from surgeon.calibrate.calibration import FeatureStats, Statistics

    stats = Statistics()
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            feature = stats.inputs.setdefault(name, FeatureStats())
            hooks.append(module.register_forward_pre_hook(_collector(feature)))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return stats


def _collector(feature):
    def hook(module, args):
        feature.add(args[0], True)

    return hook


def test_the_defaults_with_uniform_widths_give_a_plain_hugging_face_checkpoint(tmp_path):
    import json

    import transformers

    model = HF_MODELS["llama"]()
    result = surgeon.prune(
        model, 0.25, calib=calibration_ids(), progress=False, allocation="uniform"
    )
    assert "intercept" in result.report.compensation
    widths = {layer.mlp.up_proj.out_features for layer in result.model.model.layers}
    assert len(widths) == 1 and widths.pop() < 96
    surgeon.save(result.model, tmp_path)
    assert json.loads((tmp_path / "surgeon.json").read_text())["plain_from_pretrained"]
    plain = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = calibration_ids(2)
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, result.model(ids).logits)


def test_bias_compensation_is_refused_for_a_config_without_a_flag_for_that_layer():
    model = HF_MODELS["mixtral"]()  # MixtralConfig has no attention_bias: o_proj stays bias-free
    analysis = surgeon.analyze(model)
    attention = analysis.by_kind("attention")[0]
    stats = calibrate(model, token_batches(calibration_ids(4)), progress=False)
    plan = {attention.id: list(range(attention.size // attention.kv_heads))}  # one KV group
    pruned = surgeon.apply(model, plan, analysis=analysis)
    with pytest.raises(surgeon.InputError, match="o_proj has no bias and no flag of MixtralConfig"):
        compensate_consumers(model, pruned, surgeon.Plan(plan), analysis, stats, "bias")
