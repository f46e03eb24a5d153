"""Hiera's widths: its layers compare hidden_size with hidden_size_output to
decide whether to project (the stage's first layer), its mask-unit attention
reshapes its heads' output by hidden_size_output, and its first stage has one
head, whose channels q, k and v share (one fused qkv)."""

from __future__ import annotations

import pytest
import torch
import transformers

import surgeon
from surgeon.errors import RewriteError


@pytest.fixture(scope="module")
def hiera():
    config = transformers.HieraConfig(
        embed_dim=16, depths=[1, 1, 1], num_heads=[1, 2, 4], image_size=[64, 64],
        patch_stride=[4, 4], masked_unit_size=[4, 4], num_query_pool=1, mlp_ratio=2.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.HieraModel(config).eval()
    return model, surgeon.analyze(model)


def _cut(model, analysis, keep):
    plan = surgeon.Plan.for_analysis(analysis, keep, ())
    pruned = surgeon.apply(model, plan, analysis=analysis)
    return pruned, surgeon.verify(model, pruned, plan, analysis=analysis)


def test_heads_and_one_heads_channels_cut_exactly(hiera):
    model, analysis = hiera
    attention = analysis.group("attention@encoder.stages.1.layers.0.attn")  # 2 heads
    one_head = analysis.group("mlp@encoder.stages.0.layers.0.attn")  # stage 0: q, k, v of 1 head
    keep = {attention.id: [1], one_head.id: list(range(0, one_head.size, 2))}
    pruned, report = _cut(model, analysis, keep)
    assert report.ok, report.max_rel
    first = pruned.encoder.stages[0].layers[0]
    assert (first.attn.head_dim, first.attn.hidden_size_output) == (8, 8)
    assert first.hidden_size_output == first.hidden_size == 16  # the stream stays
    assert pruned.encoder.stages[1].layers[0].attn.hidden_size_output == 16


def test_a_stream_cut_keeps_the_layers_projection_choice(hiera):
    model, analysis = hiera
    first = analysis.group("hidden")  # stage 0's stream: hidden_size == hidden_size_output
    pruned, report = _cut(model, analysis, {first.id: list(range(12))})
    assert report.ok or first.id in report.inexact
    layer = pruned.encoder.stages[0].layers[0]
    assert layer.hidden_size == layer.hidden_size_output == 12
    assert layer.attn.hidden_size_output == 16  # its heads' width, not the stream's
    assert pruned.encoder.stages[1].layers[0].hidden_size == 12


def test_a_cut_making_a_projecting_layers_widths_equal_is_refused(hiera):
    model, analysis = hiera
    second = next(  # stage 1's stream: the rows of its first layer's projection
        g
        for g in analysis.prunable
        if any(m.param == "encoder.stages.1.layers.0.proj.weight" and m.dim == 0 for m in g.members)
    )
    with pytest.raises(RewriteError, match="compares hidden_size with hidden_size_output"):
        _cut(model, analysis, {second.id: list(range(16))})  # 32 -> 16, stage 0's width
