"""Experts multiplied all at once (Llama 4: one bmm over a stack of every
expert's matrices, the router's top-k choosing which outputs count) are
experts and expert MLPs, not channels: ``intermediate_size``, which sizes the
shared and the routed experts alike, follows a uniform cut of both, so it loads
with plain ``from_pretrained``."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from coverage_models import Architecture, build  # noqa: E402

import surgeon  # noqa: E402
from surgeon.checkpoint.config_file import describes_itself  # noqa: E402


def _mlp_or_expert_mlp(group) -> bool:
    return str(group.kind) in ("mlp", "expert_mlp")


def _every_other_unit(model, analysis, chosen):
    """Apply a cut keeping every other unit of each prunable group ``chosen``
    accepts (at least one): the plan and the pruned copy."""
    keep = {g.id: list(range(0, g.size, 2)) for g in analysis.prunable if chosen(g)}
    assert keep
    plan = surgeon.Plan.for_analysis(analysis, keep, ())
    return plan, surgeon.apply(model, plan, analysis=analysis)


def test_bmm_experts_are_experts_and_a_uniform_cut_describes_itself():
    model = build(Architecture("llama4_text", "Llama4ForCausalLM", "causal-lm"))
    analysis = surgeon.analyze(model)
    kinds = {g.id: str(g.kind) for g in analysis.groups}
    assert kinds["experts@model.layers.0.feed_forward"] == "experts"
    assert kinds["expert_mlp@model.layers.0.feed_forward.experts"] == "expert_mlp"
    assert kinds["mlp@model.layers.0.feed_forward.shared_expert"] == "mlp"
    plan, pruned = _every_other_unit(model, analysis, _mlp_or_expert_mlp)
    assert pruned.config.intermediate_size == model.config.intermediate_size // 2
    ids = torch.randint(0, model.config.vocab_size, (2, 8))
    assert surgeon.verify(model, pruned, plan, inputs={"input_ids": ids}, analysis=analysis).ok
    assert describes_itself(pruned)


def test_a_router_whose_experts_the_coupling_lost_is_frozen_not_inexact():
    """PhiMoE's sparsemixer picks experts by value: its router rows formed an mlp
    group apart from the experts, and a cut of them alone (renumbering the
    experts it picks) was accepted as 'inexact by nature'. Units only selected
    among, never read by a weight, are frozen."""
    model = build(Architecture("phimoe", "PhimoeForCausalLM", "causal-lm"))
    analysis = surgeon.analyze(model)
    router = analysis.group("mlp@model.layers.0.mlp.router")
    assert router.frozen and "only selected among" in router.frozen
    assert "mlp" not in {str(g.kind) for g in analysis.prunable}


def test_stacked_shared_experts_are_mlp_and_cut_with_the_routed_experts():
    """Inkling's shared experts are one (n_shared, I, H) stack run through a bmm:
    an MLP (the last axis of a 3-D weight is never a convolution's channel),
    sized by ``moe_intermediate_size`` like the routed experts, so a uniform
    cut of both loads with plain ``from_pretrained``."""
    model = build(Architecture("inkling_text", "InklingForCausalLM", "causal-lm"))
    analysis = surgeon.analyze(model)
    shared = analysis.group("mlp@model.layers.0.mlp.shared_experts")
    assert str(shared.kind) == "mlp" and shared.size == model.config.moe_intermediate_size
    plan, pruned = _every_other_unit(model, analysis, _mlp_or_expert_mlp)
    assert pruned.config.moe_intermediate_size == model.config.moe_intermediate_size // 2
    assert describes_itself(pruned)


def test_a_router_with_a_skip_class_and_looped_experts_is_frozen():
    """Zaya's router scores num_experts + 1 classes (the last skips the MLP) and
    its experts run in a loop over the experts hit, so the coupling never links
    the router's rows to them: those rows are frozen (a cut of them had failed
    after the fact), and an exact MLP cut beside them runs and verifies."""
    model = build(Architecture("zaya", "ZayaForCausalLM", "causal-lm"))
    analysis = surgeon.analyze(model)
    router = analysis.group("mlp@model.layers.0.mlp.gate")
    assert router.frozen and "a router's experts" in router.frozen
    plan, pruned = _every_other_unit(
        model, analysis, lambda g: str(g.kind) == "mlp" and g.mask_equivalent
    )
    ids = torch.randint(0, model.config.vocab_size, (2, 8))
    assert surgeon.verify(model, pruned, plan, inputs={"input_ids": ids}, analysis=analysis).ok
