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


class _NormedWidths(torch.nn.Module):
    """Three MLPs normalising their inner width: each is inexact by nature."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(
            torch.nn.Sequential(
                torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 8)
            )
            for _ in range(3)
        )

    def forward(self, x):
        for layer in self.layers:
            x = x + layer(x)
        return x


def test_many_inexact_groups_are_measured_together(monkeypatch):
    """Past ALONE_LIMIT groups inexact by nature, verify cuts them once, together,
    instead of once each (a deep model's per-layer groups timed out)."""
    import importlib

    verify_module = importlib.import_module("surgeon.verify")

    torch.manual_seed(0)
    model, x = _NormedWidths().eval(), torch.randn(4, 8)
    analysis = surgeon.analyze(model, x)
    groups = [g for g in analysis.prunable if not g.mask_equivalent and g.kind.value != "hidden"]
    assert len(groups) == 3
    plan = surgeon.Plan.for_analysis(analysis, {g.id: list(range(0, 16, 2)) for g in groups})
    pruned = surgeon.apply(model, plan, analysis=analysis)
    alone = surgeon.verify(model, pruned, plan, inputs=x, analysis=analysis)
    assert set(alone.inexact) == {g.id for g in groups} and alone.accepted
    assert len(set(alone.inexact.values())) == 3  # one error each
    monkeypatch.setattr(verify_module, "ALONE_LIMIT", 2)
    together = surgeon.verify(model, pruned, plan, inputs=x, analysis=analysis)
    assert set(together.inexact) == set(alone.inexact) and together.accepted
    assert len(set(together.inexact.values())) == 1  # one joint error
