"""Pruned decoders generate what their masked originals generate, with a KV cache."""

from __future__ import annotations

import pytest
import torch

import surgeon
from surgeon.rewriters import resolve
from surgeon.verify import MaskedReference
from tests.rewriters.plans import random_plan
from tests.zoo import HF_MODELS


def prompts():
    ids = torch.randint(4, 100, (3, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding, as generation needs
    mask[2, :4] = 0
    return ids, mask


@pytest.mark.parametrize("name", ["llama", "qwen3", "gemma3", "phi3", "mixtral", "gpt2", "falcon"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_greedy_generation_with_kv_cache_matches_the_masked_original(name, attn):
    model = HF_MODELS[name](attn)
    model.generation_config.pad_token_id = 0
    analysis = surgeon.analyze(model)
    removable = [b.name for b in analysis.blocks if b.removable]
    plan = surgeon.Plan(random_plan(analysis, seed=7), remove_blocks=tuple(removable[:1]))
    pruned = surgeon.apply(model, plan, analysis=analysis)
    reference = MaskedReference(model, resolve(plan, analysis))
    ids, mask = prompts()
    options = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, use_cache=True)
    with torch.no_grad():
        expected = reference.generate(ids, **options)
        actual = pruned.generate(ids, **options)
    assert torch.equal(actual, expected)
    assert actual.shape == (3, 14)
