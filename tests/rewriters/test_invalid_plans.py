"""Every bad plan is refused before anything changes."""

from __future__ import annotations

import pytest

import surgeon
from tests.analyzers.test_capture import assert_unchanged, snapshot
from tests.zoo import HF_MODELS

MLP = "mlp@model.layers.0.mlp"
ATTENTION = "attention@model.layers.0.self_attn"

CASES = {
    "unknown group": ({"mlp@model.layers.9.mlp": [0]}, "does not have; its groups are"),
    "index out of range": ({MLP: [0, 96]}, "out of range 0..95"),
    "negative index": ({MLP: [-1, 3]}, "out of range"),
    "duplicate index": ({MLP: [1, 1, 2]}, "listed more than once"),
    "every unit removed": ({MLP: []}, "at least 1 must stay"),
    "frozen group": ({"vocab@model.embed_tokens": [0, 1]}, "is frozen .*vocabulary"),
    "queries not the same in every kv group": ({ATTENTION: [0, 1, 4]}, "full grid"),
    "not a list": ({MLP: 3}, "must be a list of unit indices"),
    "not integers": ({MLP: [0.5, 1]}, "non-integer"),
    "unknown block": (surgeon.Plan(remove_blocks=("model.layers.7",)), "not a repeated block"),
    "every block": (
        surgeon.Plan(remove_blocks=("model.layers.0", "model.layers.1")),
        "removes every block",
    ),
    "not a plan": ([1, 2, 3], "a plan is a surgeon.Plan or a dict"),
}


@pytest.fixture(scope="module")
def llama():
    model = HF_MODELS["llama"]()
    return model, surgeon.analyze(model)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("inplace", [False, True])
def test_a_bad_plan_raises_a_clear_error_and_leaves_the_model_unchanged(llama, case, inplace):
    model, analysis = llama
    plan, message = CASES[case]
    before = snapshot(model)
    with pytest.raises(surgeon.PlanError, match=message):
        surgeon.apply(model, plan, inplace=inplace, analysis=analysis)
    assert_unchanged(model, before)
    assert model.model.layers[0].self_attn.num_key_value_groups == 4
    assert len(model.model.layers) == 2


def test_topk_routing_keeps_at_least_k_experts():
    model = HF_MODELS["mixtral"]()
    with pytest.raises(surgeon.PlanError, match="at least 2 must stay.*-inf"):
        surgeon.apply(model, {"experts@model.layers.0.mlp": [3]})


def test_a_plan_round_trips_through_json_and_refuses_unknown_fields():
    plan = surgeon.Plan({MLP: [0, 2]}, remove_blocks=("model.layers.1",))
    assert surgeon.Plan.from_json(plan.to_json()) == plan
    with pytest.raises(surgeon.PlanError, match="unknown plan fields: extra"):
        surgeon.Plan.from_dict({**plan.to_dict(), "extra": 1})
    with pytest.raises(surgeon.PlanError, match="format_version"):
        surgeon.Plan.from_dict({"keep": {}})
