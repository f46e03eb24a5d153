"""What an Analysis offers: JSON, networkx, the summary table, index layouts."""

from __future__ import annotations

import json

import pytest

import surgeon
from surgeon.analyzers import Layout
from tests.zoo import HF_MODELS


@pytest.fixture(scope="module")
def llama_analysis():
    return surgeon.analyze(HF_MODELS["llama"]())


def test_json_holds_every_group_with_members_layouts_and_blocks(llama_analysis):
    data = json.loads(llama_analysis.to_json())
    assert data["format_version"] == 1 and data["model_class"] == "LlamaForCausalLM"
    assert [g["id"] for g in data["groups"]] == [g.id for g in llama_analysis.groups]
    attention = next(g for g in data["groups"] if g["kind"] == "attention")
    assert (attention["kv_heads"], attention["q_per_kv"], attention["head_dim"]) == (2, 4, 8)
    q_proj = next(m for m in attention["members"] if m["param"].endswith("q_proj.weight"))
    assert q_proj["layout"] == {
        "product": [{"unit": "kv", "size": 2}, {"unit": "q", "size": 4}, {"fixed": 8}]
    }
    assert [b["removable"] for b in data["blocks"]] == [True, True]


def test_networkx_graph_links_groups_to_parameter_dims(llama_analysis):
    graph = llama_analysis.to_networkx()
    edge = graph.edges["mlp@model.layers.0.mlp", "model.layers.0.mlp.down_proj.weight"]
    assert edge == {"dim": 1, "layout": "unit(96)"}
    assert graph.nodes["hidden"]["size"] == 64
    assert graph.nodes["model.layers.0"]["type"] == "block"
    assert graph.has_edge("model.layers.0", "model.layers.0.mlp.up_proj.weight")


def test_summary_is_a_table_of_groups_with_frozen_reasons(llama_analysis):
    text = llama_analysis.summary()
    assert "attention@model.layers.1.self_attn  attention  2 kv x 4 q x 8 hd" in text
    assert "vocab@model.embed_tokens (vocab, 128 units): vocabulary" in text
    assert "depth: 2 of 2 blocks in model.layers are removable residual blocks" in text
    assert str(llama_analysis) == text


def test_group_counts_the_parameters_it_covers(llama_analysis):
    mlp = llama_analysis.group("mlp@model.layers.0.mlp")
    assert mlp.params_covered == 3 * 64 * 96
    with pytest.raises(KeyError, match="no group 'nope'"):
        llama_analysis.group("nope")


def test_layout_indices_follow_products_and_concatenations():
    q = Layout(
        "product",
        16,
        parts=(Layout("unit", 2, level="kv"), Layout("unit", 2, level="q"), Layout("fixed", 4)),
    )
    # keep KV group 1 and query 0 inside it: rows of head (1, 0)
    assert q.indices({"kv": [1], "q": [0]}) == [8, 9, 10, 11]
    gate_up = Layout(
        "concat", 6, parts=(Layout("unit", 3, level="unit"), Layout("unit", 3, level="unit"))
    )
    assert gate_up.indices({"unit": [0, 2]}) == [0, 2, 3, 5]
    assert str(gate_up) == "[unit(3) | unit(3)]"
    with pytest.raises(ValueError, match="unknown layout kind"):
        Layout("diagonal", 3)
