"""Default kept widths are hardware-friendly; heads and experts are not rounded."""

from __future__ import annotations

import pytest
import torch
import transformers as hf

import surgeon
from surgeon.analyzers import GroupKind
from surgeon.plan.planner import PlanOptions, channel_step, make_plan
from tests.zoo import DECODER, _build


@pytest.mark.parametrize(
    ("width", "step"),
    [(14336, 64), (11008, 64), (4096, 64), (1024, 16), (688, 8), (256, 4), (96, 1), (10, 1)],
)
def test_channel_step_keeps_alignment_up_to_64_and_a_64th_of_the_width(width, step):
    assert channel_step(width) == step


@pytest.fixture(scope="module")
def llama():
    model = _build(hf.LlamaForCausalLM, hf.LlamaConfig, **dict(DECODER, intermediate_size=1024))
    analysis = surgeon.analyze(model)
    generator = torch.Generator().manual_seed(0)
    scores = {g.id: torch.rand(g.size, generator=generator) for g in analysis.prunable}
    return analysis, scores


@pytest.mark.parametrize("allocation", ["uniform", "global", "adaptive"])
def test_default_plans_keep_multiples_of_the_channel_step(llama, allocation):
    analysis, scores = llama
    plan = make_plan(analysis, scores, PlanOptions(ratio=0.4, allocation=allocation))
    mlp = {g.id: g for g in analysis.by_kind(GroupKind.MLP)}
    assert set(plan.keep) == set(mlp)
    for group_id, units in plan.keep.items():
        step = channel_step(mlp[group_id].size)
        assert step == 16
        assert len(units) % step == 0 and len(units) < mlp[group_id].size


def test_round_to_does_not_round_head_counts(llama):
    analysis, scores = llama
    options = PlanOptions(ratio=0.4, kinds=("attention",), round_to=64, allocation="uniform")
    plan = make_plan(analysis, scores, options)
    attention = {g.id: g for g in analysis.by_kind(GroupKind.ATTENTION)}
    assert set(plan.keep) == set(attention)
    for group_id, units in plan.keep.items():
        group = attention[group_id]
        assert len(units) == (group.kv_heads - 1) * group.q_per_kv  # one of 2 KV groups cut
