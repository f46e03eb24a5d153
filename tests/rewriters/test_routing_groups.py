"""Group-limited routing (DeepSeek-V3): the router views its experts as routing
groups x experts per group. A cut of whole routing groups sets the router's
``num_group`` and its total ``num_experts`` (a two-level group: the total was
left stale, and the cut model no longer ran)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from coverage_models import Architecture, build  # noqa: E402

import surgeon  # noqa: E402


def test_cutting_a_routing_group_updates_the_router_counts():
    model = build(Architecture("deepseek_v3", "DeepseekV3ForCausalLM", "causal-lm"))
    analysis = surgeon.analyze(model)
    group = analysis.group("experts@model.layers.1.mlp")
    groups, per_group = (level.size for level in group.levels)
    assert (groups, per_group) == (model.config.n_group, model.config.n_routed_experts // groups)
    last = list(range((groups - 1) * per_group, groups * per_group))  # only the last routing group
    plan = surgeon.Plan.for_analysis(analysis, {group.id: last}, ())
    pruned = surgeon.apply(model, plan, analysis=analysis)
    router = pruned.model.layers[1].mlp.gate
    assert (router.num_group, router.num_experts) == (1, per_group)
    assert router.e_score_correction_bias.shape == (per_group,)
    ids = torch.randint(0, model.config.vocab_size, (2, 8))
    report = surgeon.verify(model, pruned, plan, inputs={"input_ids": ids}, analysis=analysis)
    assert report.ok or group.id in report.inexact  # routing is inexact by nature
