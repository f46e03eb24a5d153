"""The HTML report matches before/after rows through the plan's removed blocks."""

from __future__ import annotations

import json
import re

import surgeon
from surgeon.viz import html_report
from tests.zoo import three_layer_llama


def page_data(page: str) -> dict:
    blob = re.search(
        r'<script type="application/json" id="surgeon-data">(.*?)</script>', page, re.S
    )
    return json.loads(blob[1])


def test_layers_after_a_removed_middle_layer_are_compared_with_their_own_originals():
    model = three_layer_llama()
    analysis = surgeon.analyze(model)
    keep = {"mlp@model.layers.0.mlp": list(range(72)), "mlp@model.layers.2.mlp": list(range(40))}
    plan = surgeon.Plan.for_analysis(analysis, keep, remove_blocks=("model.layers.1",))
    pruned = surgeon.apply(model, plan, analysis=analysis)
    page = html_report(analysis, surgeon.analyze(pruned), removed_blocks=plan.remove_blocks)
    groups = {g["id"]: g for g in page_data(page)["groups"]}
    after = {gid: groups[gid]["after"] for gid in keep | {"mlp@model.layers.1.mlp": None}}
    assert after == {
        "mlp@model.layers.0.mlp": 72,
        "mlp@model.layers.1.mlp": 0,  # went with its layer
        "mlp@model.layers.2.mlp": 40,  # now the cut model's model.layers.1.mlp
    }
    members = {m["param"]: m["after"] for m in groups["mlp@model.layers.2.mlp"]["members"]}
    assert members["model.layers.2.mlp.gate_proj.weight"] == [40, 64]
    assert members["model.layers.2.mlp.down_proj.weight"] == [64, 40]
    hidden = {m["param"]: m["after"] for m in groups["hidden"]["members"]}
    assert hidden["model.layers.1.input_layernorm.weight"] is None  # shown as removed
    assert hidden["model.layers.2.input_layernorm.weight"] == [64]
    attention = groups["attention@model.layers.2.self_attn"]
    assert attention["after"] == attention["size"] == 8
