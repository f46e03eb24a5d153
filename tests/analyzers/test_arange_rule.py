"""aten.arange makes values from their index: BLOOM's ALiBi slopes are sized by
the head count, so its heads are frozen up front with the op and module named
(they were refused only after the cut, by a failed re-capture)."""

import pytest
import torch
import transformers as hf

import surgeon


def _bloom():
    config = hf.BloomConfig(vocab_size=128, hidden_size=64, n_layer=2, n_head=4)
    torch.manual_seed(0)
    return hf.BloomForCausalLM(config).eval()


def test_bloom_heads_are_frozen_with_the_op_named():
    analysis = surgeon.analyze(_bloom())
    attention = analysis.by_kind("attention")
    assert attention and all(g.frozen for g in attention)
    assert "aten.arange" in attention[0].frozen
    assert "'transformer'" in attention[0].frozen
    assert analysis.by_kind("mlp") and not any(g.frozen for g in analysis.by_kind("mlp"))


def test_a_head_cut_on_bloom_is_refused_before_surgery():
    model = _bloom()
    analysis = surgeon.analyze(model)
    group = analysis.by_kind("attention")[0]
    plan = surgeon.Plan.for_analysis(analysis, {group.id: list(range(group.size - 1))})
    with pytest.raises(surgeon.PlanError, match="frozen"):
        surgeon.apply(model, plan, analysis=analysis)


def test_position_aranges_freeze_no_unit():
    """Positions and masks come from arange too: GPT-2 keeps every group prunable."""
    config = hf.GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4)
    analysis = surgeon.analyze(hf.GPT2LMHeadModel(config).eval())
    kinds = {str(g.kind) for g in analysis.prunable}
    assert {"attention", "mlp", "hidden"} <= kinds
