"""Convolutional and nn.MultiheadAttention models."""

from __future__ import annotations

import torch
from torch import nn

import surgeon
from tests.analyzers.test_zoo import table
from tests.zoo import small_cnn


def test_small_cnn_groups_follow_residual_concat_split_and_chunk():
    analysis = surgeon.analyze(small_cnn(), torch.randn(2, 3, 16, 16))
    groups = table(analysis)
    u16 = "unit(16)"
    # residual add over a depthwise (groups=16) + pointwise pair, with BatchNorm
    assert groups["channels"] == (
        "channels",
        (("unit", 16),),
        frozenset(
            {
                ("stem.weight", 0, u16),
                ("stem.bias", 0, u16),
                ("bn.weight", 0, u16),
                ("bn.bias", 0, u16),
                ("bn.running_mean", 0, u16),
                ("bn.running_var", 0, u16),
                ("dw.weight", 0, u16),
                ("dw.bias", 0, u16),
                ("pw.weight", 0, u16),
                ("pw.weight", 1, u16),
                ("pw.bias", 0, u16),
                ("branch_a.weight", 1, u16),
                ("branch_b.weight", 1, u16),
            }
        ),
    )
    # concat: the two branches stay independent, each owns its slice of fuse's input
    assert groups["channels#2"][2] == {
        ("branch_a.weight", 0, "unit(8)"),
        ("branch_a.bias", 0, "unit(8)"),
        ("fuse.weight", 1, "[unit(8) | 12]"),
    }
    assert groups["channels#3"][2] == {
        ("branch_b.weight", 0, "unit(12)"),
        ("branch_b.bias", 0, "unit(12)"),
        ("fuse.weight", 1, "[8 | unit(12)]"),
    }
    # split into a gate pair couples channel i with channel 12+i; chunk halves swap
    assert groups["channels#4"][2] == {
        ("fuse.weight", 0, "[unit(6) | 6 | unit(6) | 6]"),
        ("fuse.bias", 0, "[unit(6) | 6 | unit(6) | 6]"),
        ("head.weight", 1, "[6 | unit(6)]"),
    }
    assert groups["channels#5"][2] == {
        ("fuse.weight", 0, "[6 | unit(6) | 6 | unit(6)]"),
        ("fuse.bias", 0, "[6 | unit(6) | 6 | unit(6)]"),
        ("head.weight", 1, "[unit(6) | 6]"),
    }
    chunk = (
        "aten.chunk.default (node 'chunk'): splits into equal pieces at run time, and its "
        "pieces belong to different groups"
    )
    # chunk(2) re-splits evenly at run time, but its halves land in different groups
    assert {g.id: g.frozen for g in analysis.frozen} == {
        "input@stem": "axis of the model input 'args[0]'",
        "channels#4": chunk,
        "channels#5": chunk,
        "output@head": "axis of the model output 'output'",
    }
    assert all(g.mask_equivalent for g in analysis.groups)  # BatchNorm is per channel


def test_group_norm_lets_whole_groups_go_but_not_channels_inside_a_group():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.GroupNorm(2, 8), nn.Conv2d(8, 4, 1)).eval()
    analysis = surgeon.analyze(model, torch.randn(1, 3, 4, 4))
    (norm_group,) = [g for g in analysis.prunable]
    assert [(lv.name, lv.size) for lv in norm_group.levels] == [("u0", 2), ("u1", 4)]
    assert not norm_group.mask_equivalent
    members = {(m.param, m.dim, str(m.layout)) for m in norm_group.members}
    assert ("1.weight", 0, "u0(2) x u1(4)") in members


def test_grouped_and_transposed_convolutions():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv1d(4, 8, 3, padding=1)
            self.grouped = nn.Conv1d(8, 6, 1, groups=2)
            self.up = nn.ConvTranspose1d(6, 5, 2, stride=2)

        def forward(self, x):
            return self.up(self.grouped(self.a(x)))

    analysis = surgeon.analyze(Net().eval(), torch.randn(1, 4, 7))
    by_member = {(m.param, m.dim): str(m.layout) for g in analysis.prunable for m in g.members}
    # One conv group (u0) spans a's outputs (2 x 4 in-group channels, u1) and the
    # grouped conv's outputs (2 x 3, u2): removing a whole group removes both.
    assert by_member[("a.weight", 0)] == "u0(2) x u1(4)"
    assert by_member[("grouped.weight", 1)] == "u1(4)"
    assert by_member[("grouped.weight", 0)] == "u0(2) x u2(3)"
    assert by_member[("up.weight", 0)] == "u0(2) x u2(3)"
    (conv_group,) = analysis.prunable
    assert [lv.size for lv in conv_group.levels] == [2, 4, 3]


def test_multihead_attention_heads_span_the_packed_in_projection():
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    x = torch.randn(2, 5, 32)
    analysis = surgeon.analyze(mha, (x, x, x))
    (attention,) = analysis.prunable
    assert (attention.kind, attention.kv_heads, attention.q_per_kv, attention.head_dim) == (
        "attention",
        4,
        1,
        8,
    )
    members = {(m.param, m.dim, str(m.layout)) for m in attention.members}
    assert members == {
        ("in_proj_weight", 0, "3 x kv(4) x 8"),
        ("in_proj_bias", 0, "3 x kv(4) x 8"),
        ("out_proj.weight", 1, "kv(4) x 8"),
    }
    # need_weights=True averages the attention weights over heads: a statistic
    assert not attention.mask_equivalent
    without_weights = surgeon.analyze(mha, ((x, x, x), {"need_weights": False}))
    assert without_weights.prunable[0].mask_equivalent
