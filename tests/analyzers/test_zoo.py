"""Exact groups for every architecture of the zoo.

Each expectation lists every group: its id, kind, unit levels and the exact
members (parameter, dim, index layout). Anything frozen is listed with why.
"""

from __future__ import annotations

import pytest

import surgeon
from tests.zoo import HF_MODELS, LAYERS

U64, U96 = "unit(64)", "unit(96)"


def table(analysis: surgeon.Analysis) -> dict[str, tuple]:
    return {
        g.id: (
            g.kind.value,
            tuple((lv.name, lv.size) for lv in g.levels),
            frozenset((m.param, m.dim, str(m.layout)) for m in g.members),
        )
        for g in analysis.groups
    }


def group(kind, levels, members):
    return (kind, tuple(levels), frozenset(members))


def llama_like(*, bias=False, extra_norms=(), tied=False, prefix="model"):
    """Llama, Mistral, Qwen2, Qwen3, Gemma3: 2 KV heads x 4 queries x head_dim 8."""
    layers = [f"{prefix}.layers.{i}" for i in range(LAYERS)]
    embed, head = f"{prefix}.embed_tokens.weight", "lm_head.weight"
    hidden = {(embed, 1, U64), (f"{prefix}.norm.weight", 0, U64)}
    if not tied:
        hidden.add((head, 1, U64))
    expected = {}
    for layer in layers:
        attn, mlp = f"{layer}.self_attn", f"{layer}.mlp"
        hidden |= {(f"{attn}.{p}_proj.weight", 1, U64) for p in "qkv"}
        hidden |= {(f"{attn}.o_proj.weight", 0, U64), (f"{mlp}.down_proj.weight", 0, U64)}
        hidden |= {(f"{mlp}.{p}_proj.weight", 1, U64) for p in ("gate", "up")}
        norms = ("input_layernorm", "post_attention_layernorm", *extra_norms)
        hidden |= {(f"{layer}.{n}.weight", 0, U64) for n in norms}
        heads = {
            (f"{attn}.q_proj.weight", 0, "kv(2) x q(4) x 8"),
            (f"{attn}.k_proj.weight", 0, "kv(2) x 8"),
            (f"{attn}.v_proj.weight", 0, "kv(2) x 8"),
            (f"{attn}.o_proj.weight", 1, "kv(2) x q(4) x 8"),
        }
        if bias:
            heads |= {
                (f"{attn}.q_proj.bias", 0, "kv(2) x q(4) x 8"),
                (f"{attn}.k_proj.bias", 0, "kv(2) x 8"),
                (f"{attn}.v_proj.bias", 0, "kv(2) x 8"),
            }
        expected[f"attention@{attn}"] = group("attention", [("kv", 2), ("q", 4)], heads)
        expected[f"mlp@{mlp}"] = group(
            "mlp",
            [("unit", 96)],
            {
                (f"{mlp}.gate_proj.weight", 0, U96),
                (f"{mlp}.up_proj.weight", 0, U96),
                (f"{mlp}.down_proj.weight", 1, U96),
            },
        )
    expected["hidden"] = group("hidden", [("unit", 64)], hidden)
    expected[f"vocab@{prefix}.embed_tokens"] = group(
        "vocab", [("unit", 128)], {(embed, 0, "unit(128)")}
    )
    if not tied:
        expected["output@lm_head"] = group("output", [("unit", 128)], {(head, 0, "unit(128)")})
    return expected


def test_llama_has_one_mlp_and_one_gqa_attention_group_per_layer_and_one_hidden_group():
    analysis = surgeon.analyze(HF_MODELS["llama"]())
    assert table(analysis) == llama_like()
    attention = analysis.group("attention@model.layers.0.self_attn")
    assert (attention.kv_heads, attention.q_per_kv, attention.head_dim) == (2, 4, 8)
    assert attention.size == 8
    assert analysis.group("mlp@model.layers.0.mlp").size == 96
    hidden = analysis.group("hidden")
    assert hidden.size == 64 and not hidden.mask_equivalent  # RMSNorm statistics
    assert all(g.mask_equivalent for g in analysis.groups if g.kind != "hidden")


@pytest.mark.parametrize(
    "name, options",
    [
        ("mistral", {}),
        ("qwen2", {"bias": True}),
        # q_norm / k_norm normalise inside one head: head_dim is structure, not a unit.
        ("qwen3", {}),
        (
            "gemma3",
            {
                "tied": True,
                "extra_norms": ("pre_feedforward_layernorm", "post_feedforward_layernorm"),
            },
        ),
    ],
)
def test_llama_family_groups_are_exact(name, options):
    assert table(surgeon.analyze(HF_MODELS[name]())) == llama_like(**options)


def test_tied_embedding_and_lm_head_share_one_group_under_the_first_name():
    analysis = surgeon.analyze(HF_MODELS["gemma3"]())
    vocab = analysis.group("vocab@model.embed_tokens")
    assert vocab.members[0].aliases == ("lm_head.weight",)
    assert "token ids" in vocab.frozen and "model output 'logits'" in vocab.frozen
    assert [g.id for g in analysis.frozen] == ["vocab@model.embed_tokens"]


def test_phi3_fused_qkv_and_gate_up_are_sliced_through_their_segments():
    groups = table(surgeon.analyze(HF_MODELS["phi3"]()))
    attn = "model.layers.0.self_attn"
    assert groups[f"attention@{attn}"] == group(
        "attention",
        [("kv", 2), ("q", 4)],
        {
            (f"{attn}.qkv_proj.weight", 0, "[kv(2) x q(4) x 8 | kv(2) x 8 | kv(2) x 8]"),
            (f"{attn}.o_proj.weight", 1, "kv(2) x q(4) x 8"),
        },
    )
    mlp = "model.layers.0.mlp"
    assert groups[f"mlp@{mlp}"] == group(
        "mlp",
        [("unit", 96)],
        {
            (f"{mlp}.gate_up_proj.weight", 0, "[unit(96) | unit(96)]"),
            (f"{mlp}.down_proj.weight", 1, U96),
        },
    )
    assert len(groups) == 1 + 2 * LAYERS + 2


def test_gpt2_conv1d_weights_are_stored_transposed():
    analysis = surgeon.analyze(HF_MODELS["gpt2"]())
    groups = table(analysis)
    h = "transformer.h.0"
    qkv = "[kv(4) x 16 | kv(4) x 16 | kv(4) x 16]"
    assert groups[f"attention@{h}.attn"] == group(
        "attention",
        [("kv", 4)],
        {
            (f"{h}.attn.c_attn.weight", 1, qkv),
            (f"{h}.attn.c_attn.bias", 0, qkv),
            (f"{h}.attn.c_proj.weight", 0, "kv(4) x 16"),
        },
    )
    assert groups[f"mlp@{h}.mlp"] == group(
        "mlp",
        [("unit", 96)],
        {
            (f"{h}.mlp.c_fc.weight", 1, U96),
            (f"{h}.mlp.c_fc.bias", 0, U96),
            (f"{h}.mlp.c_proj.weight", 0, U96),
        },
    )
    hidden = groups["hidden"][2]
    assert (f"{h}.attn.c_attn.weight", 0, U64) in hidden
    assert (f"{h}.attn.c_proj.bias", 0, U64) in hidden
    assert ("transformer.wte.weight", 1, U64) in hidden
    # position table rows are positions, not units: no group at all
    assert not any(
        m[0] == "transformer.wpe.weight" and m[1] == 0 for g in groups.values() for m in g[2]
    )
    assert [g.id for g in analysis.frozen] == ["vocab@transformer.wte"]
    assert len(groups) == 1 + 2 * LAYERS + 1


def test_opt_attention_and_mlp():
    groups = table(surgeon.analyze(HF_MODELS["opt"]()))
    attn = "model.decoder.layers.0.self_attn"
    members = {(f"{attn}.{p}_proj.{w}", 0, "kv(4) x 16") for p in "qkv" for w in ("weight", "bias")}
    members.add((f"{attn}.out_proj.weight", 1, "kv(4) x 16"))
    assert groups[f"attention@{attn}"] == group("attention", [("kv", 4)], members)
    layer = "model.decoder.layers.0"
    assert groups[f"mlp@{layer}"] == group(
        "mlp",
        [("unit", 96)],
        {
            (f"{layer}.fc1.weight", 0, U96),
            (f"{layer}.fc1.bias", 0, U96),
            (f"{layer}.fc2.weight", 1, U96),
        },
    )
    assert len(groups) == 1 + 2 * LAYERS + 1


def test_falcon_new_architecture_interleaves_q_k_v_inside_each_kv_group():
    analysis = surgeon.analyze(HF_MODELS["falcon"]())
    attn = "transformer.h.0.self_attention"
    assert table(analysis)[f"attention@{attn}"] == group(
        "attention",
        [("kv", 2), ("q", 4)],
        {
            (f"{attn}.query_key_value.weight", 0, "kv(2) x [q(4) | 2] x 8"),
            (f"{attn}.dense.weight", 1, "kv(2) x q(4) x 8"),
        },
    )
    assert analysis.unknown_ops == {}


def test_gpt_neox_views_fused_qkv_per_head():
    groups = table(surgeon.analyze(HF_MODELS["gpt_neox"]()))
    attn = "gpt_neox.layers.0.attention"
    assert groups[f"attention@{attn}"] == group(
        "attention",
        [("kv", 4)],
        {
            (f"{attn}.query_key_value.weight", 0, "kv(4) x 48"),
            (f"{attn}.query_key_value.bias", 0, "kv(4) x 48"),
            (f"{attn}.dense.weight", 1, "kv(4) x 16"),
        },
    )


@pytest.mark.parametrize("name, width", [("mixtral", 96), ("qwen3_moe", 48)])
def test_fused_experts_couple_expert_count_with_router_rows_and_share_their_width(name, width):
    analysis = surgeon.analyze(HF_MODELS[name]())
    groups = table(analysis)
    mlp = "model.layers.0.mlp"
    assert groups[f"experts@{mlp}"] == group(
        "experts",
        [("unit", 4)],
        {
            (f"{mlp}.gate.weight", 0, "unit(4)"),
            (f"{mlp}.experts.gate_up_proj", 0, "unit(4)"),
            (f"{mlp}.experts.down_proj", 0, "unit(4)"),
        },
    )
    unit = f"unit({width})"
    assert groups[f"expert_mlp@{mlp}.experts"] == group(
        "expert_mlp",
        [("unit", width)],
        {
            (f"{mlp}.experts.gate_up_proj", 1, f"[{unit} | {unit}]"),
            (f"{mlp}.experts.down_proj", 2, unit),
        },
    )
    experts = analysis.group(f"experts@{mlp}")
    assert experts.min_units == 2  # top-2 routing needs two experts left
    assert any("-inf" in note for note in experts.notes)
    assert len(groups) == 1 + 3 * LAYERS + 2


def test_bert_heads_mlp_and_pooler():
    analysis = surgeon.analyze(HF_MODELS["bert"]())
    groups = table(analysis)
    layer = "bert.encoder.layer.0"
    members = {
        (f"{layer}.attention.self.{p}.{w}", 0, "kv(4) x 16")
        for p in ("query", "key", "value")
        for w in ("weight", "bias")
    }
    members.add((f"{layer}.attention.output.dense.weight", 1, "kv(4) x 16"))
    assert groups[f"attention@{layer}.attention"] == group("attention", [("kv", 4)], members)
    assert groups["mlp"] == group(
        "mlp",
        [("unit", 64)],
        {
            ("bert.pooler.dense.weight", 0, U64),
            ("bert.pooler.dense.bias", 0, U64),
            ("classifier.weight", 1, U64),
        },
    )
    assert {g.id for g in analysis.frozen} == {
        "vocab@bert.embeddings.word_embeddings",
        "output@classifier",
    }
    # post-norm layers: the output is normalised after the residual add
    assert not any(b.residual for b in analysis.blocks)


def test_vit_patch_embedding_joins_the_hidden_group_and_pixels_are_an_input():
    analysis = surgeon.analyze(HF_MODELS["vit"]())
    hidden = table(analysis)["hidden"][2]
    conv = "vit.embeddings.patch_embeddings.projection"
    assert {
        (f"{conv}.weight", 0, U64),
        (f"{conv}.bias", 0, U64),
        ("vit.embeddings.cls_token", 2, U64),
        ("vit.embeddings.position_embeddings", 2, U64),
    } <= hidden
    assert {g.id for g in analysis.frozen} == {f"input@{conv}", "output@classifier"}
    assert len(analysis.prunable) == 1 + 2 * LAYERS


def test_t5_shares_position_bias_so_heads_are_one_group_per_stack():
    analysis = surgeon.analyze(HF_MODELS["t5"]())
    encoder = analysis.group("attention@encoder.block")
    assert {m.param for m in encoder.members} >= {
        f"encoder.block.{i}.layer.0.SelfAttention.q.weight" for i in range(LAYERS)
    }
    bias = [m for m in encoder.members if "relative_attention_bias" in m.param]
    assert [(m.dim, str(m.layout)) for m in bias] == [(1, "kv(4)")]
    kinds = sorted(g.kind.value for g in analysis.prunable)
    assert kinds == ["attention"] * 3 + ["hidden"] + ["mlp"] * 4
    blocks = {b.name: b.removable for b in analysis.blocks}
    assert blocks == {
        "encoder.block.0": False,
        "encoder.block.1": True,
        "decoder.block.0": False,
        "decoder.block.1": True,
    }
    assert [g.id for g in analysis.frozen] == ["vocab@shared"]


@pytest.mark.parametrize("name", sorted(HF_MODELS))
def test_no_op_lacks_a_rule_and_only_interfaces_are_frozen(name):
    analysis = surgeon.analyze(HF_MODELS[name]())
    assert analysis.unknown_ops == {}
    assert {g.kind.value for g in analysis.frozen} <= {"vocab", "input", "output"}


@pytest.mark.parametrize("name", ["llama", "qwen2", "gemma3", "phi3", "mixtral", "gpt2", "opt"])
def test_sdpa_and_eager_attention_give_identical_groups(name):
    assert table(surgeon.analyze(HF_MODELS[name]("eager"))) == table(
        surgeon.analyze(HF_MODELS[name]("sdpa"))
    )


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_a_padding_mask_does_not_change_the_groups(attn):
    import torch

    model = HF_MODELS["llama"](attn)
    ids = torch.randint(0, 128, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, :3] = 0
    with_mask = surgeon.analyze(
        model, {"input_ids": ids, "attention_mask": mask, "use_cache": False}
    )
    assert table(with_mask) == table(surgeon.analyze(model))


@pytest.mark.parametrize("name", ["llama", "mixtral", "gpt2"])
def test_decoder_layers_are_removable_residual_blocks(name):
    analysis = surgeon.analyze(HF_MODELS[name]())
    assert len(analysis.blocks) == LAYERS
    assert all(b.residual and b.removable and b.entry and b.exit for b in analysis.blocks)
    assert [b.index for b in analysis.blocks] == list(range(LAYERS))
