"""SqueezeBERT computes q, k, v and its feed-forward with grouped 1x1
convolutions whose groups are the heads: a head cut removes whole groups, so
each convolution's ``groups`` must follow, not only its weight."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from coverage_models import Architecture, build  # noqa: E402

import surgeon  # noqa: E402


def test_a_head_cut_removes_whole_convolution_groups():
    model = build(Architecture("squeezebert", "SqueezeBertForMaskedLM", "masked-lm"))
    analysis = surgeon.analyze(model)
    heads = next(g for g in analysis.prunable if str(g.kind) == "attention")
    query = model.transformer.encoder.layers[0].attention.query
    assert heads.size == query.groups == 4
    plan = surgeon.Plan.for_analysis(analysis, {heads.id: [0, 2, 3]}, ())
    pruned = surgeon.apply(model, plan, analysis=analysis)
    cut = pruned.transformer.encoder.layers[0].attention.query
    assert cut.groups == 3
    assert cut.out_channels == query.out_channels * 3 // 4
    ids = torch.randint(0, model.config.vocab_size, (2, 8))
    report = surgeon.verify(model, pruned, plan, inputs={"input_ids": ids}, analysis=analysis)
    assert report.exact_ok and set(report.inexact) == {heads.id}
    assert query.groups == 4  # the user's model is unchanged
