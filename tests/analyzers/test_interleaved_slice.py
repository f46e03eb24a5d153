"""``x[..., start::step]`` over a whole axis picks one phase of an interleaved
layout. gpt-oss stores its experts' gate and up columns alternating in one
``gate_up_proj``: the expert channels are one group with ``down_proj``, cut in
pairs (they were split into a frozen group and a lone ``down_proj`` group whose
cut then failed its re-capture)."""

import transformers as hf

import surgeon
from tests.zoo import tiny


def test_gpt_oss_expert_channels_are_one_interleaved_group():
    model = tiny(
        hf.GptOssForCausalLM,
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=64,
        layer_types=["full_attention"] * 2,
    )
    analysis = surgeon.analyze(model)
    channels = analysis.by_kind("expert_mlp")
    assert len(channels) == 2 and not any(g.frozen for g in channels)
    group = channels[0]
    assert group.size == 96
    assert {m.param.rsplit(".", 1)[-1] for m in group.members} >= {"gate_up_proj", "down_proj"}
    gate_up = next(m for m in group.members if m.param.endswith("gate_up_proj"))
    assert gate_up.layout.indices({"unit": [1]}) == [2, 3]  # the pair of column 1
    plan = surgeon.Plan.for_analysis(analysis, {g.id: list(range(0, 96, 2)) for g in channels})
    pruned = surgeon.apply(model, plan, analysis=analysis)
    report = surgeon.verify(model, pruned, plan, analysis=analysis)
    assert report.ok, report
    assert 48 in pruned.model.layers[0].mlp.experts.down_proj.shape[1:]
