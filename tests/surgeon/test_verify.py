"""verify must catch a wrong cut, not only bless right ones."""

from __future__ import annotations

import torch

import surgeon
from tests.zoo import HF_MODELS

PLAN = {"mlp@model.layers.0.mlp": list(range(0, 96, 3))}


def test_a_correct_cut_verifies_with_per_output_errors():
    model = HF_MODELS["llama"]()
    report = surgeon.verify(model, surgeon.apply(model, PLAN), PLAN)
    assert report.ok and [o.name for o in report.outputs] == ["['logits']"]
    assert report.tolerance == 1e-5
    assert "verify: ok" in str(report)


def test_a_cut_that_kept_the_wrong_channels_is_caught():
    model = HF_MODELS["llama"]()
    wrong = surgeon.apply(model, {"mlp@model.layers.0.mlp": list(range(1, 96, 3))})
    report = surgeon.verify(model, wrong, PLAN)
    assert not report.ok and report.max_rel > 1e-3
    assert "MISMATCH" in str(report)


def test_a_damaged_weight_is_caught():
    model = HF_MODELS["llama"]()
    pruned = surgeon.apply(model, PLAN)
    with torch.no_grad():
        pruned.model.layers[1].mlp.down_proj.weight[0, 0] += 1.0
    assert not surgeon.verify(model, pruned, PLAN).ok


def test_removed_experts_are_masked_with_minus_infinity_not_zero():
    model = HF_MODELS["mixtral"]()
    plan = {"experts@model.layers.0.mlp": [0, 2, 3]}
    report = surgeon.verify(model, surgeon.apply(model, plan), plan)
    assert report.ok, str(report)
