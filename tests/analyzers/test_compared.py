"""Hiera's HieraLayer projects and pools only where hidden_size !=
hidden_size_output, a test on attributes no graph shows: the analysis names
the groups that set the two widths, and the planner keeps the comparison's
outcome where a cut would flip it (apply refuses such a cut)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from coverage_models import Architecture, build  # noqa: E402

import surgeon  # noqa: E402
from surgeon.errors import RewriteError  # noqa: E402
from surgeon.plan.allocation import Candidate, keep_comparisons  # noqa: E402
from surgeon.plan.options import PlanOptions  # noqa: E402


@pytest.fixture(scope="module")
def hiera():
    model = build(Architecture("hiera", "HieraForImageClassification", "image-classification"))
    return model, surgeon.analyze(model)


def test_the_groups_setting_compared_widths_are_named(hiera):
    _, analysis = hiera
    pair = next(p for p in analysis.compared if p.module == "hiera.encoder.stages.3.layers.0")
    assert pair.names == ("hidden_size", "hidden_size_output")
    assert pair.widths == (64, 128)
    assert pair.groups == ("hidden#3", "mlp")
    assert pair.flipped({"mlp": 64}) and not pair.flipped({"mlp": 96})
    assert pair.flipped({"hidden#3": 32, "mlp": 32})


def test_the_planner_keeps_the_comparison_and_apply_refuses_a_flip(hiera):
    model, analysis = hiera
    stream = analysis.group("mlp")
    candidates = [Candidate(stream, None, torch.zeros(stream.size), 1.0)]
    counts = keep_comparisons(analysis, candidates, {"mlp": 64}, PlanOptions(ratio=0.5))
    assert counts["mlp"] != 64 and counts["mlp"] < stream.size
    plan = surgeon.Plan.for_analysis(analysis, {"mlp": list(range(64))})
    with pytest.raises(RewriteError, match="compares hidden_size with hidden_size_output"):
        surgeon.apply(model, plan, analysis=analysis)
    kept = surgeon.Plan.for_analysis(analysis, {"mlp": list(range(counts["mlp"]))})
    pruned = surgeon.apply(model, kept, analysis=analysis)
    assert pruned.hiera.encoder.stages[3].layers[0].hidden_size_output == counts["mlp"]
