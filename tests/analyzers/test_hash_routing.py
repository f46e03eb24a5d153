"""Experts chosen through a token -> expert table (DeepSeek-V4's hash-routed
layers, ``tid2eid``) hold expert ids the cut would not renumber: a cut of those
experts returned a model 15% off its masked original; now they are frozen up
front, naming the op."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from coverage_models import Architecture, build  # noqa: E402

import surgeon  # noqa: E402


def test_hash_routed_experts_are_frozen_and_a_cut_is_refused():
    model = build(Architecture("deepseek_v4", "DeepseekV4ForCausalLM", "causal-lm"))
    assert model.model.layers[0].mlp.is_hash
    analysis = surgeon.analyze(model)
    experts = next(g for g in analysis.groups if g.id == "experts@model.layers.0.mlp.experts")
    assert experts.frozen and "histc" in experts.frozen
    plan = surgeon.Plan.for_analysis(analysis, {experts.id: [0, 1]})
    with pytest.raises(surgeon.PlanError, match="frozen"):
        surgeon.apply(model, plan, analysis=analysis)
