"""The cut model's config describes its shapes: a model rebuilt from it has
exactly the cut model's tensors, also when whole blocks go with the widths."""

from __future__ import annotations

import pytest
import transformers as hf

import surgeon
from tests.zoo import three_layer_llama


def shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("removed", [(), ("model.layers.1",), ("model.layers.0", "model.layers.2")])
def test_uniform_widths_with_removed_blocks_update_the_config(removed):
    model = three_layer_llama()
    analysis = surgeon.analyze(model)
    kept = [i for i in range(3) if f"model.layers.{i}" not in removed]
    keep = {f"mlp@model.layers.{i}.mlp": list(range(40)) for i in kept}
    keep |= {f"attention@model.layers.{i}.self_attn": [0, 1, 2, 3] for i in kept}
    plan = surgeon.Plan.for_analysis(analysis, keep, remove_blocks=removed)
    pruned = surgeon.apply(model, plan, analysis=analysis)
    config = pruned.config
    assert (config.intermediate_size, config.num_key_value_heads) == (40, 1)
    assert (config.num_attention_heads, config.num_hidden_layers) == (4, 3 - len(removed))
    rebuilt = hf.LlamaForCausalLM(hf.LlamaConfig.from_dict(config.to_dict()))
    assert shapes(rebuilt) == shapes(pruned)
    assert model.config.intermediate_size == 96  # the original is untouched


def test_ragged_widths_leave_the_config_at_the_original_width():
    model = three_layer_llama()
    analysis = surgeon.analyze(model)
    keep = {"mlp@model.layers.0.mlp": list(range(40)), "mlp@model.layers.2.mlp": list(range(56))}
    pruned = surgeon.apply(model, surgeon.Plan.for_analysis(analysis, keep), analysis=analysis)
    assert pruned.config.intermediate_size == 96


def test_hidden_groups_of_different_widths_update_their_own_fields():
    """Gemma-4 carries per-layer inputs beside its residual stream: a hidden group
    hidden_size_per_layer_input wide, which its model reshapes by. Its config is
    heterogeneous (full-attention layers have their own head_dim), which refuses
    reads of head_dim as one value for every layer."""
    config = hf.Gemma4TextConfig(
        vocab_size=64,
        vocab_size_per_layer_input=64,
        hidden_size=32,
        hidden_size_per_layer_input=16,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        global_head_dim=32,
        layer_types=["sliding_attention", "full_attention"],
    )
    model = hf.Gemma4ForCausalLM(config).eval()
    analysis = surgeon.analyze(model)
    (per_layer,) = [g for g in analysis.by_kind("hidden") if g.size == 16]
    plan = surgeon.Plan.for_analysis(analysis, {per_layer.id: list(range(0, 16, 2))})
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert (pruned.config.hidden_size, pruned.config.hidden_size_per_layer_input) == (32, 8)
    assert pruned.model.hidden_size_per_layer_input == 8
    rebuilt = hf.Gemma4ForCausalLM(hf.Gemma4TextConfig.from_dict(pruned.config.to_dict()))
    assert shapes(rebuilt) == shapes(pruned)


def test_a_per_stage_head_list_pins_no_head_dim():
    # Swin-V2: num_attention_heads maps to num_heads, a list per stage; its last
    # stage's width is hidden_size, which a cut of that stage's stream updates
    from surgeon.rewriters.config_fields import _pin_head_dim
    from surgeon.rewriters.transaction import Transaction

    config = hf.Swinv2Config(embed_dim=8, depths=[1, 1], num_heads=[1, 2])
    _pin_head_dim(config, Transaction())
    assert getattr(config, "head_dim", None) is None


def test_shared_experts_update_their_own_field():
    """A MoE's shared experts are MLPs of their own width (Qwen2-MoE's
    shared_expert_intermediate_size): a uniform cut of them is in config.json."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from coverage_models import Architecture, build

    from surgeon.checkpoint.config_file import describes_itself

    model = build(Architecture("qwen2_moe", "Qwen2MoeForCausalLM", "causal-lm"))
    analysis = surgeon.analyze(model)
    shared = [g for g in analysis.prunable if g.kind.value == "mlp"]
    assert shared and all(g.size == model.config.shared_expert_intermediate_size for g in shared)
    plan = surgeon.Plan.for_analysis(analysis, {g.id: list(range(0, g.size, 2)) for g in shared})
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert pruned.config.shared_expert_intermediate_size == shared[0].size // 2
    assert pruned.config.moe_intermediate_size == model.config.moe_intermediate_size
    assert describes_itself(pruned)
