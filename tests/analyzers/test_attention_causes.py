"""Coupling rules added for attention cuts the coverage sweep refused after the
cut: im2col and torch.multiply (ConvBERT), an empty piece of a cat (MobileBERT),
view_as_complex of a sliced tensor (DeepSeek-V2), one head's width (PVT), and
the input positions of an interpolation (PVT's position table)."""

import torch
from torch import nn

import surgeon
from surgeon.analyzers.limits import TIED_WIDTHS


class Unfolded(nn.Module):
    """A span convolution: unfold the channels' windows, weigh them, project."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(8, 6)
        self.gate = nn.Linear(8, 6)
        self.down = nn.Linear(6 * 3, 8)

    def forward(self, x):  # x: (batch, seq, 8)
        h = torch.multiply(self.up(x), self.gate(x))  # (b, s, 6)
        h = h.transpose(1, 2).unsqueeze(-1)  # (b, 6, s, 1)
        windows = nn.functional.unfold(h, kernel_size=[3, 1], padding=[1, 0])  # (b, 18, s)
        return self.down(windows.transpose(1, 2))


def test_im2col_keeps_channels_and_multiply_couples():
    torch.manual_seed(0)
    model = Unfolded().eval()
    x = torch.randn(2, 5, 8)
    analysis = surgeon.analyze(model, x)
    assert not analysis.unknown_ops
    group = next(g for g in analysis.prunable if "up.weight" in g.params)
    assert {"gate.weight", "down.weight"} <= set(group.params)
    assert group.size == 6 and group.frozen is None

    plan = surgeon.Plan.for_analysis(analysis, {group.id: [0, 2, 3, 5]}, ())
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert pruned.down.in_features == 12
    assert surgeon.verify(model, pruned, plan, inputs=x, analysis=analysis).ok


class EmptyHead(nn.Module):
    """MobileBERT's LM head: cat([decoder.weight.t(), dense.weight]) with a dense
    of zero rows when hidden == embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 4)
        self.decoder = nn.Linear(4, 10)
        self.dense = nn.Linear(10, 0, bias=False)

    def forward(self, x):
        h = self.proj(x)
        return h.matmul(torch.cat([self.decoder.weight.t(), self.dense.weight], dim=0))


def test_an_empty_cat_piece_shares_the_other_axes():
    analysis = surgeon.analyze(EmptyHead().eval(), torch.randn(2, 8))
    alone = [g for g in analysis.prunable if set(g.params) == {"dense.weight"}]
    assert not alone
    group = next(g for g in analysis.groups if "dense.weight" in g.params)
    assert "decoder.weight" in group.params


class SlicedRope(nn.Module):
    """DeepSeek-V2: rotary keys sliced from [latent | rope] rows, read as complex."""

    def __init__(self) -> None:
        super().__init__()
        self.kv = nn.Linear(8, 6 + 4)
        self.up = nn.Linear(6, 8)

    def forward(self, x):
        latent, rope = torch.split(self.kv(x), [6, 4], dim=-1)
        pairs = torch.view_as_complex(rope.float().reshape(*rope.shape[:-1], -1, 2))
        return self.up(latent) + torch.view_as_real(pairs).flatten(-2).sum(-1, keepdim=True)


def test_view_as_complex_of_a_slice_keeps_even_pieces():
    analysis = surgeon.analyze(SlicedRope().eval(), torch.randn(2, 3, 8))
    group = next(g for g in analysis.prunable if "up.weight" in g.params)
    assert group.multiple_of == 2


class OneHead(nn.Module):
    """Single-head attention reshaped by an attribute head_dim (PVT, stage 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.head_dim = 8
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.o = nn.Linear(8, 8)

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = (
            p(x).view(b, s, 1, self.head_dim).transpose(1, 2) for p in (self.q, self.k, self.v)
        )
        scores = (q @ k.transpose(-1, -2)).softmax(-1)
        return self.o((scores @ v).transpose(1, 2).reshape(b, s, 8))


def test_one_heads_width_is_frozen():
    analysis = surgeon.analyze(OneHead().eval(), torch.randn(2, 5, 8))
    for name in ("q.weight", "v.weight"):
        group = next(
            g for g in analysis.groups if any(m.param == name and m.dim == 0 for m in g.members)
        )
        assert group.frozen and "single attention head" in group.frozen


class InterpolatedTable(nn.Module):
    """PVT: a position table reshaped to its grid and interpolated."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(1, 16, 8))
        self.proj = nn.Linear(8, 8)

    def forward(self, x):  # x: (batch, 16, 8)
        grid = self.table.reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
        grid = nn.functional.interpolate(grid, size=(4, 4), mode="bilinear")
        return self.proj(x + grid.reshape(1, -1, 16).permute(0, 2, 1))


def test_an_interpolated_tables_positions_form_no_group():
    analysis = surgeon.analyze(InterpolatedTable().eval(), torch.randn(2, 16, 8))
    for group in analysis.prunable:
        if "table" in group.params:
            assert group.size == 8, group


def test_tied_width_entries_name_real_classes():
    import importlib
    import importlib.util

    for name in TIED_WIDTHS:
        module, _, cls = name.rpartition(".")
        if importlib.util.find_spec(module.partition(".")[0]) is None:
            continue  # a library this environment lacks (torchvision beside the main torch)
        assert hasattr(importlib.import_module(module), cls), name


def test_heads_reshaped_to_the_inputs_width_are_frozen_up_front():
    # TrOCRAttention: bsz, tgt_len, embed_dim = hidden_states.size() ... reshape(bsz,
    # tgt_len, embed_dim): fewer heads no longer fill the input's width
    from transformers import TrOCRConfig, TrOCRForCausalLM

    config = TrOCRConfig(
        vocab_size=32, d_model=16, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=24
    )
    model = TrOCRForCausalLM(config).eval()
    analysis = surgeon.analyze(model)
    attention = analysis.by_kind("attention")
    assert attention and all("embed_dim read from its input" in g.frozen for g in attention)
    assert all(g.frozen for g in analysis.by_kind("hidden"))
    assert [g.kind for g in analysis.prunable] == ["mlp"]


class BlockedAttention(nn.Module):
    """LongT5's local attention: heads written out, the batch and the blocks in ``...``."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 12), nn.Linear(8, 12), nn.Linear(8, 12)
        self.o = nn.Linear(12, 8)

    def forward(self, x):  # x: (batch, 2 blocks x 3, 8)
        def blocks(t):
            return t.reshape(x.shape[0], 2, 3, 3, 4)  # (batch, blocks, len, 3 heads, 4)

        q, k, v = blocks(self.q(x)), blocks(self.k(x)), blocks(self.v(x))
        scores = torch.einsum("...qhd,...khd->...hqk", q, k).softmax(-1)
        out = torch.einsum("...hqk,...khd->...qhd", scores, v)
        return self.o(out.reshape(x.shape[0], 6, 12))


def test_einsum_heads_beside_an_ellipsis_of_blocks_form_an_attention_group():
    analysis = surgeon.analyze(BlockedAttention().eval(), torch.randn(2, 6, 8))
    (attention,) = analysis.by_kind("attention")
    assert (attention.kv_heads, attention.head_dim) == (3, 4)
    assert len(attention.levels) == 1


def test_prophetnet_heads_fill_the_inputs_width_so_its_hidden_size_is_frozen():
    # ProphetNet's attentions reshape their heads' output to the input's width: a
    # hidden cut alone left the heads 64 wide against a 48-wide reshape
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from coverage_models import Architecture, build

    model = build(Architecture("prophetnet", "ProphetNetForConditionalGeneration", "seq2seq-lm"))
    analysis = surgeon.analyze(model)
    hidden = analysis.by_kind("hidden")
    assert hidden and all("embed_dim read from its input" in (g.frozen or "") for g in hidden)
