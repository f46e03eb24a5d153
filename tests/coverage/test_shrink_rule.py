"""The coverage sweep's one shrinking rule (bench/coverage_models.py) builds the
architectures whose shrunk default config used to be inconsistent: build only,
each a small model in a few seconds."""

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import coverage_models  # noqa: E402

# model type -> the relation between config fields that the rule now keeps
BUILDS = {
    "bamba": "Mamba-2 d_head x n_heads == expand x hidden",
    "granitemoehybrid": "Mamba-2 d_head x n_heads == expand x hidden",
    "bit": "group-norm groups divide the shrunk stage widths",
    "data2vec-vision": "out_indices (a list, no stage names) within the new depth",
    "dots1": "a MoE's expert count, top-k and shared experts left None",
    "gemma3n_text": "KV-shared layers fewer than the layers",
    "blt": "hash n-gram vocabularies and the global width shrink",
    "esm": "vocab_size left None (completed)",
    "hunyuan_v1_dense": "head_dim left None (completed)",
    "dbrx": "the attention sub-config's rope_theta (completed)",
    "cohere_compass_text": "per-layer-type rope_parameters left empty (completed)",
    "mamba2": "Mamba-2 head_dim x num_heads == expand x hidden, n_groups divide heads",
    "mobilevit": "stage widths stay divisible by the head count",
    "nemotron": "num_key_value_heads left None (completed)",
    "olmo_hybrid": "a hybrid keeps an attention layer (completed)",
    "lfm2_moe": "layer_types left None (completed)",
    "reformer": "axial position factors keep their sum and product; is_decoder (completed)",
    "xlnet": "d_head == d_model // n_head (completed)",
}


@pytest.fixture(scope="module")
def architectures():
    return {a.model_type: a for a in coverage_models.discover()}


@pytest.mark.parametrize("model_type", sorted(BUILDS))
def test_builds_small(architectures, model_type):
    model = coverage_models.build(architectures[model_type])
    # Gemma 3n's per-layer embeddings (vocab_size_per_layer_input) are left as
    # large as Gemma 4's, whose cached rows were built that way
    limit = 200_000_000 if model_type == "gemma3n_text" else 3_000_000
    assert sum(p.numel() for p in model.parameters()) < limit


def test_routing_fields_are_complete():
    """A top-k left None (DeepSeek-V2's default) or above the shrunk expert count
    (ERNIE 4.5 MoE's moe_k) breaks the router at the first forward."""
    deepseek = coverage_models.shrink(
        {"moe_intermediate_size": 1407, "n_routed_experts": 64, "num_experts_per_tok": None}
    )
    assert deepseek["num_experts_per_tok"] == coverage_models.TOP_K
    ernie = coverage_models.shrink({"moe_num_experts": 64, "moe_k": 6})
    assert ernie["moe_k"] <= ernie["moe_num_experts"]
