"""Head cuts on attention whose widths are read from attributes named like the
hidden size (GPTBigCode multi-query: ``embed_dim`` splits its fused c_attn) and
on DeepSeek-V3's multi-head latent attention (MLA: the rotary part of each
head is a per-head feature; the KV latent rank is read as ``kv_lora_rank``)."""

import transformers as hf

import surgeon
from tests.zoo import tiny


def _cut(model, keep):
    analysis = surgeon.analyze(model)
    plan = surgeon.Plan.for_analysis(analysis, keep(analysis))
    pruned = surgeon.apply(model, plan, analysis=analysis)
    return analysis, pruned, surgeon.verify(model, pruned, plan, analysis=analysis)


def test_gpt_bigcode_multi_query_heads_and_hidden():
    model = tiny(
        hf.GPTBigCodeForCausalLM, vocab_size=128, n_embd=64, n_layer=2, n_head=4, multi_query=True
    )

    def half_the_queries(analysis):
        return {g.id: [0, 2] for g in analysis.by_kind("attention")}

    analysis, pruned, report = _cut(model, half_the_queries)
    assert analysis.by_kind("attention")[0].q_per_kv == 4
    assert report.ok, report
    assert pruned.transformer.h[0].attn.embed_dim == 32  # the query width, not the hidden
    _, _, hidden_report = _cut(model, lambda a: {"hidden": list(range(48))})
    assert set(hidden_report.inexact) == {"hidden"}  # refused nothing, reported inexact


def _deepseek():
    return tiny(
        hf.DeepseekV3ForCausalLM,
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        moe_intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        q_lora_rank=48,
        kv_lora_rank=32,
        qk_rope_head_dim=16,
        qk_nope_head_dim=16,
        v_head_dim=16,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_group=2,
        topk_group=1,
        first_k_dense_replace=1,
        max_position_embeddings=64,
    )


def test_deepseek_v3_mla_heads_are_cuttable_and_exact():
    model = _deepseek()
    analysis = surgeon.analyze(model)
    attention = analysis.by_kind("attention")
    assert len(attention) == 2 and not any(g.frozen for g in attention)
    assert all(g.size == 4 for g in attention)  # heads, not heads x rotary dims
    _, pruned, report = _cut(model, lambda a: {g.id: [0, 3] for g in a.by_kind("attention")})
    assert report.ok, report
    assert pruned.model.layers[0].self_attn.q_b_proj.out_features == 2 * 32


def test_deepseek_v3_kv_latent_rank_cut_runs_and_is_reported_inexact():
    model = _deepseek()

    def latent(analysis):
        group = next(
            g for g in analysis.prunable if "self_attn.kv_a_layernorm.weight" in " ".join(g.params)
        )
        return {group.id: list(range(0, 32, 2))}

    analysis, pruned, report = _cut(model, latent)
    assert pruned.model.layers[0].self_attn.kv_lora_rank == 16
    assert list(report.inexact)  # RMSNorm over the latent: inexact by nature, said so
