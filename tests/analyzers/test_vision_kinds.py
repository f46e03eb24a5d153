"""Group kinds say what a group is in vision models: a convolution's channels,
an MLP, attention heads, or a residual stream (hidden) through several blocks."""

from __future__ import annotations

import torch
import transformers as hf

import surgeon
from tests import vision


def kinds(analysis: surgeon.Analysis) -> dict[str, tuple[str, int]]:
    return {g.id: (g.kind.value, g.size) for g in analysis.groups}


def test_plain_cnn_channels_and_classifier_mlp_are_not_hidden():
    analysis = surgeon.analyze(vision.alexnet_like(), torch.randn(1, 3, 16, 16))
    found = kinds(analysis)
    assert sorted(found.values()) == [
        ("channels", 16),
        ("channels", 32),
        ("channels", 32),
        ("input", 3),
        ("mlp", 64),
        ("mlp", 64),
        ("output", 10),
    ]
    # a single Conv2d or Linear of a Sequential is a layer, not a block
    assert not any(b.name.startswith(("0.", "2.")) for b in analysis.blocks)


def test_resnet_streams_are_hidden_and_block_internals_are_channels():
    analysis = surgeon.analyze(vision.resnet_like(), torch.randn(1, 3, 16, 16))
    hidden = {m.param for g in analysis.by_kind("hidden") for m in g.members}
    assert [g.size for g in analysis.by_kind("hidden")] == [16, 32]
    # the stage streams: the stem, every block's output conv and the projection
    assert {"conv1.weight", "layer1.0.conv2.weight", "layer2.0.downsample.0.weight"} <= hidden
    assert "layer2.1.conv1.weight" in hidden and "fc.weight" in hidden  # readers (dim 1)
    inner = analysis.by_kind("channels")
    assert [g.id for g in inner] == [
        "channels@layer1.0",
        "channels@layer1.1",
        "channels@layer2.0",
        "channels@layer2.1",
    ]
    assert [b.name for b in analysis.blocks] == ["layer1.0", "layer1.1", "layer2.0", "layer2.1"]


def test_convnext_blocks_are_the_blocks_not_the_stages_and_their_mlps_are_mlp():
    analysis = surgeon.analyze(vision.convnext_like(), torch.randn(1, 3, 32, 32))
    assert [b.name for b in analysis.blocks] == ["0.1.0", "0.1.1", "0.3.0", "0.3.1"]
    assert all(b.residual for b in analysis.blocks)
    assert sorted(kinds(analysis).values()) == [
        ("hidden", 16),
        ("hidden", 32),
        ("input", 3),
        ("mlp", 64),
        ("mlp", 64),
        ("mlp", 128),
        ("mlp", 128),
        ("output", 10),
    ]


def test_vit_mlps_and_heads_are_per_block_and_the_stream_is_one_hidden_group():
    analysis = surgeon.analyze(vision.vit_like(), torch.randn(1, 3, 16, 16))
    assert kinds(analysis) == {
        "hidden": ("hidden", 32),
        "input@conv_proj": ("input", 3),
        "attention@layers.0.self_attention": ("attention", 4),
        "mlp@layers.0.mlp": ("mlp", 64),
        "attention@layers.1.self_attention": ("attention", 4),
        "mlp@layers.1.mlp": ("mlp", 64),
        "output@head": ("output", 10),
    }
    hidden = {m.param for m in analysis.group("hidden").members}
    assert {"class_token", "pos_embedding", "conv_proj.weight", "ln.weight"} <= hidden


def test_efficientnet_expanded_and_squeeze_channels_are_channels():
    analysis = surgeon.analyze(vision.efficientnet_like(), torch.randn(1, 3, 16, 16))
    assert sorted(kinds(analysis).values()) == [
        ("channels", 8),
        ("channels", 8),
        ("channels", 64),
        ("channels", 64),
        ("hidden", 16),
        ("input", 3),
        ("output", 10),
    ]


def test_hf_resnet_bottleneck_channels_are_channels_not_hidden():
    config = hf.ResNetConfig(
        embedding_size=8, hidden_sizes=[16, 32], depths=[2, 2], layer_type="bottleneck"
    )
    torch.manual_seed(0)
    analysis = surgeon.analyze(hf.ResNetModel(config).eval(), torch.randn(1, 3, 32, 32))
    found = kinds(analysis)
    assert sorted(size for kind, size in found.values() if kind == "hidden") == [16, 32]
    inner = [i for i, (kind, _) in found.items() if kind == "channels" and ".layers." in i]
    assert len(inner) == 8  # two per bottleneck, four bottlenecks
    assert found["channels"] == ("channels", 8)  # the stem's output, before a projection
