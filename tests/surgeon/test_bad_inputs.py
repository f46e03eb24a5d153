"""Bad inputs: each gives a clear error and leaves the model as it was.
The table in docs/reliability.md lists these tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import surgeon
from tests.analyzers.test_capture import assert_unchanged, snapshot
from tests.zoo import HF_MODELS


class Twice(nn.Module):
    """One Linear applied twice: its rows and columns are one index space."""

    def __init__(self):
        super().__init__()
        self.inp, self.shared, self.out = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.out(self.shared(torch.relu(self.shared(self.inp(x)))))


def test_a_plan_made_for_another_model_is_refused():
    small, large = HF_MODELS["llama"](), HF_MODELS["mistral"]()
    plan = surgeon.Plan.for_analysis(surgeon.analyze(small), {"mlp@model.layers.0.mlp": [0, 1]})
    other = surgeon.Plan.for_analysis(surgeon.analyze(HF_MODELS["qwen3_moe"]()), {})
    before = snapshot(large)
    with pytest.raises(surgeon.PlanError, match="made for another model"):
        surgeon.apply(large, other)
    assert surgeon.apply(large, plan) is not large  # same structure: the plan fits
    assert_unchanged(large, before)


def test_a_submodule_used_twice_couples_its_rows_with_its_columns():
    model, x = Twice().eval(), torch.randn(2, 6)
    analysis = surgeon.analyze(model, x)
    (group,) = analysis.prunable
    assert {(m.param, m.dim) for m in group.members} >= {("shared.weight", 0), ("shared.weight", 1)}
    plan = {group.id: [0, 2, 5]}
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert pruned.shared.weight.shape == (3, 3)
    assert surgeon.verify(model, pruned, plan, x, analysis=analysis).ok


def test_verify_refuses_models_in_training_mode():
    model = HF_MODELS["llama"]()
    pruned = surgeon.apply(model, {"mlp@model.layers.0.mlp": [0, 1]})
    pruned.train()
    with pytest.raises(surgeon.InputError, match="training mode.*call model.eval"):
        surgeon.verify(model, pruned, {"mlp@model.layers.0.mlp": [0, 1]})


def test_analysis_and_cuts_work_in_training_mode_and_keep_it():
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)).train()
    analysis = surgeon.analyze(model, torch.randn(3, 4))
    pruned = surgeon.apply(model, {analysis.prunable[0].id: [1, 2]}, analysis=analysis)
    assert model.training and pruned.training and pruned[0].out_features == 2


def test_hooks_are_refused_before_cutting():
    model = HF_MODELS["llama"]()
    handle = model.model.layers[0].mlp.register_forward_hook(lambda m, i, o: o)
    before = snapshot(model)
    with pytest.raises(surgeon.InputError, match="'model.layers.0.mlp' has forward hooks"):
        surgeon.apply(model, {"mlp@model.layers.0.mlp": [0, 1]}, inplace=True)
    assert_unchanged(model, before)
    handle.remove()


def test_transformers_output_capturing_hooks_do_not_block_a_cut():
    """A model that once returned hidden states carries transformers' recorders
    (shape-free, for good); a distilled model (surgeon.heal) is cut again."""
    model = HF_MODELS["llama"]().eval()
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 2, 3]]), output_hidden_states=True)
    assert model.model.layers[0]._forward_hooks  # installed by transformers
    result = surgeon.prune(model, 0.3, criterion="magnitude", progress=False)
    assert result.report.verification.ok
    out = result.model(input_ids=torch.tensor([[1, 2, 3]]), output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1


def test_unsupported_dtypes_are_named():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    model[0].weight = nn.Parameter(model[0].weight.to(torch.int8), requires_grad=False)
    with pytest.raises(surgeon.InputError, match="'0.weight' has dtype torch.int8.*dequantize"):
        surgeon.analyze(model, torch.randn(3, 4))


def test_inputs_on_another_device_are_named():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    with pytest.raises(surgeon.InputError, match="is on meta but the model is on cpu"):
        surgeon.analyze(model, torch.randn(3, 4, device="meta"))
