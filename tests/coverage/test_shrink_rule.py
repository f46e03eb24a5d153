"""The coverage sweep's one shrinking rule (bench/coverage_shrink.py) builds the
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
    "bit": "group-norm groups divide the shrunk stage widths",
    "data2vec-vision": "out_indices (a list, no stage names) within the new depth",
    "dots1": "a MoE's expert count, top-k and shared experts left None",
    "gemma3n_text": "KV-shared layers fewer than the layers",
    "blt": "hash n-gram vocabularies and the global width shrink",
    "esm": "vocab_size left None (completed)",
    "hunyuan_v1_dense": "head_dim left None (completed)",
    "cohere_compass_text": "per-layer-type rope_parameters left empty (completed)",
    "mamba2": "Mamba-2 head_dim x num_heads == expand x hidden, n_groups divide heads",
    "mobilevit": "stage widths stay divisible by the head count",
    "nemotron": "num_key_value_heads left None (completed)",
    "olmo_hybrid": "a hybrid keeps an attention layer (completed)",
    "lfm2_moe": "layer_types left None (completed)",
    "reformer": "axial position factors keep their sum and product; is_decoder (completed)",
    "xlnet": "d_head == d_model // n_head (completed)",
    "xlstm": "embedding_dim and num_blocks follow hidden_size and num_hidden_layers",
    "zamba2": "Mamba-2 mamba_headdim x n_mamba_heads == expand x hidden",
    "longcat_flash": "MLA qk_head_dim == qk_nope_head_dim + qk_rope_head_dim; expert widths",
    "efficientnet": "base scale: coefficients at most 1, hidden_dim divided alike",
    "textnet": "stem_out_channels tied to the stage widths",
    "hgnet_v2": "stem and stage channels tied to the stage widths, at least 8 wide",
    "xmod": "default_language left None: the first of languages",
    # an all-Mamba default: runs once use_cache=False reaches its **kwargs
    "granitemoehybrid": "Mamba-2 heads kept",
}

# model types whose own forward fails on what transformers' default config
# leaves (the shrunk config is consistent: these build with the rules above,
# DBRX's rope_theta completed)
OWN_FORWARD_FAILS = {
    "dbrx": "clip_qkv None reaches torch.clamp",
    "shieldgemma2": "reads two logits by the full vocabulary's token ids",
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


@pytest.mark.parametrize("model_type", sorted(OWN_FORWARD_FAILS))
def test_own_forward_failure_is_unbuildable(architectures, model_type):
    with pytest.raises(coverage_models.OwnForwardError, match="its own forward fails"):
        coverage_models.build(architectures[model_type])


def test_relations_of_the_default_are_kept():
    """Fields the default config ties together stay tied after shrinking."""
    mla = coverage_models.shrink(
        {"qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "qk_head_dim": 192, "v_head_dim": 128}
    )
    assert mla["qk_head_dim"] == mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
    xlstm = coverage_models.shrink(
        {"hidden_size": 4096, "embedding_dim": 4096, "num_hidden_layers": 32, "num_blocks": 32}
    )
    assert (xlstm["embedding_dim"], xlstm["num_blocks"]) == (xlstm["hidden_size"], 2)
    # an embedding width other than the hidden size (EmbeddingGemma) is its own
    other = coverage_models.shrink({"hidden_size": 512, "embedding_dim": 768})
    assert other["embedding_dim"] == 768
    stages = coverage_models.shrink(
        {
            "num_channels": 3,
            "hidden_sizes": [256, 512, 1024, 2048],
            "stem_channels": [3, 32, 48],
            "stage_in_channels": [48, 128, 512, 1024],
            "stage_out_channels": [128, 512, 1024, 2048],
            "aspp_out_channels": 300,  # tied to nothing: left alone
        }
    )
    assert stages["stage_out_channels"][-1] == stages["hidden_sizes"][-1]
    assert stages["stem_channels"][0] == 3
    assert stages["stem_channels"][-1] == stages["stage_in_channels"][0]
    assert stages["aspp_out_channels"] == 300
    zamba = coverage_models.shrink(
        {"hidden_size": 2560, "mamba_expand": 2, "mamba_headdim": 640, "n_mamba_heads": 8}
    )
    assert zamba["mamba_headdim"] * zamba["n_mamba_heads"] == 2 * zamba["hidden_size"]


def test_routing_fields_are_complete():
    """A top-k left None (DeepSeek-V2's default) or above the shrunk expert count
    (ERNIE 4.5 MoE's moe_k) breaks the router at the first forward."""
    deepseek = coverage_models.shrink(
        {"moe_intermediate_size": 1407, "n_routed_experts": 64, "num_experts_per_tok": None}
    )
    assert deepseek["num_experts_per_tok"] == coverage_models.TOP_K
    ernie = coverage_models.shrink({"moe_num_experts": 64, "moe_k": 6})
    assert ernie["moe_k"] <= ernie["moe_num_experts"]
