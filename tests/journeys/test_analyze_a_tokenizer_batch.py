"""A user's first call: the tokenizer's batch (a BatchEncoding with a padding
mask) straight into ``surgeon.analyze``, then a cut verified on that batch."""

from __future__ import annotations

import torch
import transformers

import surgeon
from tests.journeys.user import fixture

TEXTS = ["def add(a, b):\n    return a + b", "A dictionary maps keys to values"]


def test_a_tokenizer_batch_goes_into_analyze_and_verify():
    directory = fixture("tiny-llama")
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    tokenizer.pad_token = tokenizer.eos_token  # the fixture has none, as many LLMs
    model = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert isinstance(batch, transformers.BatchEncoding) and not batch.attention_mask.all()

    analysis = surgeon.analyze(model, batch)

    assert len(analysis.by_kind("mlp")) == 8 and len(analysis.by_kind("attention")) == 8
    keep = {g.id: list(range(0, g.size, 2)) for g in analysis.by_kind("mlp")}
    plan = surgeon.Plan.for_analysis(analysis, keep)
    pruned = surgeon.apply(model, plan, analysis=analysis)
    report = surgeon.verify(model, pruned, plan, inputs=batch, analysis=analysis)
    assert report.ok and not report.weak, str(report)
    assert pruned.config.intermediate_size == 512
    with torch.no_grad():
        logits = pruned(**batch).logits
    assert logits.shape == (*batch.input_ids.shape, 8192)
