"""A ``chunk`` whose pieces hold the same units in the same arrangement is not
frozen, even when what no cut touches is split differently inside them: JetMoE
chunks its fused key/value projection into keys (whose head width RoPE splits
into halves) and values. Its mixture of attention heads keeps the key/value
width as ``hidden_size`` (set from the attribute table only)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from coverage_models import Architecture, build  # noqa: E402

import surgeon  # noqa: E402


def test_jetmoe_kv_heads_cut_through_the_chunk():
    model = build(Architecture("jetmoe", "JetMoeForCausalLM", "causal-lm"))
    analysis = surgeon.analyze(model)
    attention = analysis.by_kind("attention")
    assert attention and all(g.frozen is None for g in attention)
    group = attention[0]
    plan = surgeon.Plan.for_analysis(analysis, {group.id: list(range(group.size - 1))}, ())
    pruned = surgeon.apply(model, plan, analysis=analysis)
    layer = model.model.layers[0].self_attention
    cut = pruned.model.layers[0].self_attention
    width = layer.experts.hidden_size
    assert cut.experts.hidden_size == width - width // group.size
    assert cut.experts.input_size == layer.experts.input_size  # the model's width stays
    ids = torch.randint(0, model.config.vocab_size, (2, 8))
    assert surgeon.verify(model, pruned, plan, inputs={"input_ids": ids}, analysis=analysis).ok
