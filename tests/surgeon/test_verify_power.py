"""``verify`` reports its own power: how far masking the removed units moves
the original's outputs, and whether a wrong cut could pass as well."""

from __future__ import annotations

import torch

import surgeon
from surgeon.verify import WEAK_POWER
from tests.zoo import HF_MODELS

MLP_GROUP = "mlp@model.layers.0.mlp"
KEEP_EVEN, KEEP_ODD = list(range(0, 96, 2)), list(range(1, 96, 2))


def _wrong_cut_report(model):
    """The model cut to the even units, verified against a plan keeping the odd ones."""
    analysis = surgeon.analyze(model)
    pruned = surgeon.apply(model, {MLP_GROUP: KEEP_EVEN}, analysis=analysis)
    right = surgeon.verify(model, pruned, {MLP_GROUP: KEEP_EVEN}, analysis=analysis)
    wrong = surgeon.verify(model, pruned, {MLP_GROUP: KEEP_ODD}, analysis=analysis)
    return right, wrong


def test_a_check_that_sees_the_cut_tells_a_wrong_cut_from_a_right_one():
    right, wrong = _wrong_cut_report(HF_MODELS["llama"]())
    assert right.ok and not right.weak
    assert right.power > 1e-3 > WEAK_POWER * right.tolerance  # half the MLP of layer 0
    assert not wrong.ok and wrong.max_rel > 1e-3
    assert "power: masking the removed units moves the outputs by max rel" in str(right)


def test_a_check_blind_to_the_removed_units_is_flagged_weak():
    # GoogLeNet-like: at random init the cut branch moves the output by ~1e-11
    model = HF_MODELS["llama"]()
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight *= 1e-9
    right, wrong = _wrong_cut_report(model)
    assert right.ok and right.weak and right.power < 1e-7
    assert wrong.ok and wrong.weak  # a wrong cut passes too: that is what weak means
    assert "WEAK CHECK" in str(wrong) and "a wrong cut would pass as well" in str(wrong)


def test_a_plan_that_removes_nothing_says_so():
    model = HF_MODELS["llama"]()
    report = surgeon.verify(model, surgeon.apply(model, {}), {})
    assert report.ok and report.power == 0.0 and not report.removes
    assert "the plan removes nothing" in str(report)


def test_inexact_groups_do_not_hide_a_wrong_exact_cut():
    model = HF_MODELS["llama"]()
    analysis = surgeon.analyze(model)
    hidden = list(range(0, 64, 2))
    cut = {"hidden": hidden, MLP_GROUP: KEEP_EVEN}
    pruned = surgeon.apply(model, cut, analysis=analysis)
    right = surgeon.verify(model, pruned, cut, analysis=analysis)
    assert not right.ok and right.inexact["hidden"] > 1e-3  # RMSNorm over a cut hidden axis
    assert right.exact_ok is True and right.accepted
    wrong = surgeon.verify(
        model, pruned, {"hidden": hidden, MLP_GROUP: KEEP_ODD}, analysis=analysis
    )
    assert wrong.exact_ok is False and not wrong.accepted
    assert "against the inexact groups cut and the rest masked: MISMATCH" in str(wrong)
