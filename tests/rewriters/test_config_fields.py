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
