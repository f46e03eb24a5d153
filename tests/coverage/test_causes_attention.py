"""Attention (head / KV-group) cuts the coverage sweep refused after the cut
("the cut model no longer runs"), mended at their root: each architecture runs
every stage of the sweep (bench/coverage.py); the stages the cause broke must
pass, and no stage may return a mismatched model, crash or time out. Where a cut
cannot be exact, the group is frozen up front with the reason, and the stage is
a refusal that names the module (REFUSED)."""

import pytest

from tests.coverage.test_causes import architectures, check, coverage, run_rows  # noqa: F401

# model type -> the cause its row used to fail on, and the stages it broke
CAUSES = {
    # Kimi-style delta attention splits its fused q/k/v by [qkv_dim] * 3
    "bailing_hybrid": ("q/k/v split by qkv_dim", ("kv-groups",)),
    "kimi_linear": ("q/k/v split by qkv_dim", ("kv-groups",)),
    # LeViT reshapes its heads' output by out_dim_projection (value heads are
    # attention_ratio x key_dim wide); analyze empties its eval-mode bias cache
    "levit": ("out_dim_projection, attention_bias_cache", ("kv-groups", "save-load")),
    # MobileViTV2's linear attention splits its qkv conv by [1, embed_dim, embed_dim]
    "mobilevitv2": ("key/value channels read from embed_dim", ("widths", "prune")),
    # MobileBERT's head concatenates a (0, vocab) weight: its vocab axis was cut alone
    "mobilebert": ("an empty piece of a cat", ("widths", "prune")),
    # view_as_complex of a slice of [kv_lora_rank | rope] rows needs even strides
    "deepseek_v2": ("view_as_complex of a sliced tensor", ("prune",)),
    # PVT: its position table is interpolated (positions, not units) and one-head
    # attention reshapes by attention_head_size (frozen)
    "pvt": ("interpolated position table, one head's width", ("widths", "hidden", "prune")),
    # PVT-v2's attention reshapes by its input's channel count: frozen up front
    "pvt_v2": ("widths tied to the input's channels", ("widths", "prune")),
    # MRA's attention: query, key and value outputs frozen up front
    "mra": ("mra2_attention", ("widths", "prune")),
}

# model type -> (stage refused up front, a words of its reason)
REFUSED = {
    "codegen": ("kv-groups", "CodeGenAttention"),  # a literal mp_num = 4
    "big_bird": ("kv-groups", "BigBirdSelfAttention"),  # rebuilt from the config
    "pvt_v2": ("kv-groups", "PvtV2SelfAttention"),  # reshaped by num_channels
    "convbert": ("kv-groups", "ConvBertSelfAttention"),  # heads folded into the batch
    "deepseek_v4": ("kv-groups", "DeepseekV4Attention"),  # heads in config.o_groups rows
}


@pytest.fixture(scope="module")
def rows(architectures):  # noqa: F811 - the fixture
    return run_rows(architectures, [*CAUSES, *REFUSED])


@pytest.mark.parametrize("model_type", sorted(CAUSES))
def test_every_stage_passes(rows, model_type):
    check(rows[model_type], model_type, *CAUSES[model_type])


@pytest.mark.parametrize("model_type", sorted(REFUSED))
def test_refused_up_front(rows, model_type):
    stage, named = REFUSED[model_type]
    row = rows[model_type]
    assert coverage.buildable(row), row["stages"].get("build")
    outcome = row["stages"][stage]
    assert outcome["status"] == "refused", outcome
    assert outcome["reason"].startswith("Frozen: "), outcome["reason"]
    assert named in outcome["reason"], outcome["reason"]
    bad = {s: r["reason"] for s, r in coverage.applicable(row).items() if s in coverage.failed(row)}
    assert not bad, f"{model_type}: {bad}"
