"""The guarantee: ``analyze``, ``apply`` and ``verify`` leave nothing on the
user's model; the copy ``apply`` returns keeps every training flag and is one
``verify`` accepts on its own groups; a cut that cannot be made is refused with
a reason and the model unchanged."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import surgeon
from surgeon.analyzers.untouched import diff, state_of, untouched
from tests.plain import plain_transformer, token_ids

HABITS = ("none_entries", "cached_table", "forward_buffer", "rearrange")


def _every_group_halved(analysis: surgeon.Analysis) -> surgeon.Plan:
    """Half of every head and MLP group (the hidden size, inexact under
    LayerNorm by nature, is left alone) and the last block."""
    keep = {}
    for group in analysis.prunable:
        if group.kind.value in ("attention", "mlp"):
            keep[group.id] = list(range(0, group.size, 2))
    removable = [b.name for b in analysis.blocks if b.removable]
    return surgeon.Plan.for_analysis(analysis, keep, remove_blocks=removable[-1:])


@pytest.mark.parametrize("habit", HABITS)
def test_analyze_apply_and_verify_leave_the_model_as_it_was(habit):
    model = plain_transformer(**{habit: True})
    before = state_of(model)
    analysis = surgeon.analyze(model, token_ids())
    plan = _every_group_halved(analysis)
    pruned = surgeon.apply(model, plan, analysis=analysis)
    cut = state_of(pruned)
    report = surgeon.verify(model, pruned, plan, token_ids(), analysis=analysis)
    assert not diff(before, state_of(model))
    assert not diff(cut, state_of(pruned))
    assert [m.training for m in pruned.modules()] == [False] * len(list(pruned.modules()))
    # verify accepts what apply returned
    assert report.ok and report.max_rel <= report.tolerance and not report.inexact, str(report)
    assert not report.weak and report.power > 1e-3
    assert sum(p.numel() for p in pruned.parameters()) < 0.75 * sum(
        p.numel() for p in model.parameters()
    )


class _WrittenSizes(nn.Module):
    """Head sizes written into the code: a head cut cannot run."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.out = nn.Linear(16, 48), nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(2, 5, 3, 4, 4).permute(2, 0, 3, 1, 4)
        y = (q @ k.transpose(-1, -2)).softmax(-1) @ v
        return self.out(y.transpose(1, 2).reshape(2, 5, 16))


def test_a_cut_that_cannot_be_made_is_refused_with_a_reason_and_the_model_unchanged():
    torch.manual_seed(0)
    model = _WrittenSizes().eval()
    x = torch.randn(2, 5, 16)
    before = state_of(model)
    analysis = surgeon.analyze(model, x)
    (attention,) = analysis.by_kind("attention")
    with pytest.raises(surgeon.RewriteError, match="module '.*' failed with.*The model is"):
        surgeon.apply(model, {attention.id: [0, 1]}, analysis=analysis)
    assert not diff(before, state_of(model))
    assert model.qkv.out_features == 48


def test_untouched_puts_back_attributes_buffers_modules_and_gradients():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[0].weight.grad = torch.ones(3, 3)
    grad = model[0].weight.grad
    before = state_of(model)
    with untouched(model):
        model[0].table = torch.zeros(2)
        model[1].register_buffer("mask", torch.ones(2))
        model.append(nn.ReLU())
        model[0].weight.grad = None
        model[1].weight.requires_grad_(False)
        model.train(False)
        assert diff(before, state_of(model))
    assert not diff(before, state_of(model))
    assert model[0].weight.grad is grad and model[1].weight.requires_grad and model.training
    assert len(model) == 2 and not hasattr(model[0], "table")


@pytest.mark.parametrize("habit", HABITS)
def test_prune_leaves_the_model_as_it_was_and_verifies_its_cut(habit):
    model = plain_transformer(**{habit: True})
    before = state_of(model)
    result = surgeon.prune(model, 0.3, criterion="magnitude", inputs=token_ids(), progress=False)
    assert not diff(before, state_of(model))
    check = result.report.verification
    assert check.ok and check.max_rel <= check.tolerance and not check.weak
    before_blocks, after_blocks = result.report.block_params
    assert 0.25 < 1 - after_blocks / before_blocks < 0.35  # ratio is of block parameters


def test_prune_raises_with_the_model_unchanged_when_its_cut_does_not_verify(monkeypatch):
    prune_module = sys.modules["surgeon.prune"]  # surgeon.prune is also the function

    def faulty_apply(model, plan, **kwargs):  # a rewrite that got one slice wrong
        pruned = surgeon.apply(model, plan, **kwargs)
        with torch.no_grad():
            pruned.blocks[0].mlp[2].weight[0, 0] += 1.0
        return pruned

    monkeypatch.setattr(prune_module, "apply", faulty_apply)
    model = plain_transformer()
    before = state_of(model)
    with pytest.raises(surgeon.RewriteError, match="does not match the masked original") as err:
        surgeon.prune(model, 0.3, criterion="magnitude", inputs=token_ids(), progress=False)
    assert not err.value.report.ok and err.value.report.max_rel > 1e-3
    assert not diff(before, state_of(model))


def test_prune_says_when_its_check_could_not_see_the_cut():
    model = plain_transformer()
    with torch.no_grad():
        for block in model.blocks:  # the MLPs barely reach the output
            block.mlp[2].weight *= 1e-9
            block.mlp[2].bias.zero_()
    with pytest.warns(UserWarning, match="WEAK CHECK"):
        result = surgeon.prune(
            model, 0.3, criterion="magnitude", inputs=token_ids(), progress=False
        )
    assert result.report.verification.weak and result.report.verification.power < 1e-6
    assert "WEAK CHECK" in str(result.report)
