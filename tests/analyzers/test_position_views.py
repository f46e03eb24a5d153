"""Views that regroup positions leave the heads around them free: a relative
shift (XLNet, Funnel: scores (b, h, i, j) viewed as (b, h, j, i) and sliced)
and overlapping windows read by ``as_strided`` (Longformer's chunks of
batch x heads rows). Only the positions are frozen; before, every axis of the
node was, the heads too, and their attention could not be cut. Two position axes
that cannot be one (a padded mask against windowed scores: LED) are frozen,
not the heads beside them."""

import torch
from torch import nn

import surgeon


class RelativeShift(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(8, 8) for _ in range(4))
        self.num_heads = 2
        self.memory = nn.Parameter(torch.randn(1, 3, 8))

    def forward(self, x):
        b, s, _ = x.shape
        context = torch.cat([self.memory.expand(b, -1, -1), x], dim=1)  # j = s + 3
        q = self.q(x).view(b, s, self.num_heads, 4).transpose(1, 2)
        k = self.k(context).view(b, s + 3, self.num_heads, 4).transpose(1, 2)
        v = self.v(context).view(b, s + 3, self.num_heads, 4).transpose(1, 2)
        scores = q @ k.transpose(-1, -2)  # (b, h, i, j)
        _, h, i, j = scores.shape
        shifted = scores.reshape(b, h, j, i)[:, :, 1:, :].reshape(b, h, i, j - 1)
        scores = torch.cat([shifted, shifted[..., :1]], dim=-1)
        out = scores.softmax(-1) @ v
        return self.o(out.transpose(1, 2).reshape(b, s, self.num_heads * 4))


class OverlappingWindows(nn.Module):
    """Longformer-style: batch x heads rows chunked into overlapping windows."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(8, 8) for _ in range(4))
        self.num_heads = 2

    def _chunks(self, t, b, s):
        h = self.num_heads
        rows = t.view(b, s, h, 4).transpose(1, 2).reshape(b * h, s, 4)
        chunks = rows.view(b * h, s // 4, 4, 4)
        size, stride = list(chunks.size()), list(chunks.stride())
        size[1], stride[1] = size[1] * 2 - 1, stride[1] // 2
        return chunks.as_strided(size=size, stride=stride)

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = (self._chunks(p(x), b, s) for p in (self.q, self.k, self.v))
        out = (q @ k.transpose(-1, -2)).softmax(-1) @ v  # (b*h, windows, 4, 4)
        out = out[:, ::2].reshape(b, self.num_heads, s, 4).transpose(1, 2)
        out = out.reshape(b, s, self.num_heads * 4)
        return self.o(out)


def _cut_one_head(model, x):
    analysis = surgeon.analyze(model, x)
    heads = analysis.by_kind("attention")
    assert len(heads) == 1 and heads[0].frozen is None, [g.frozen for g in heads]
    plan = surgeon.Plan.for_analysis(analysis, {heads[0].id: [1]}, ())
    pruned = surgeon.apply(model, plan, analysis=analysis)
    report = surgeon.verify(model, pruned, plan, inputs=x, analysis=analysis)
    assert report.ok and not report.weak, str(report)
    return pruned


def test_a_relative_shift_freezes_positions_not_heads():
    torch.manual_seed(0)
    pruned = _cut_one_head(RelativeShift().eval(), torch.randn(2, 5, 8))
    assert pruned.q.out_features == 4


def test_overlapping_windows_keep_their_heads():
    torch.manual_seed(0)
    pruned = _cut_one_head(OverlappingWindows().eval(), torch.randn(2, 8, 8))
    assert pruned.o.in_features == 4


class PaddedMask(nn.Module):
    """LED: a mask over positions built by concatenation, broadcast against
    scores whose positions come from reshaped windows (a product): the two
    position axes cannot be one, and only they are frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(8, 8) for _ in range(4))
        self.num_heads = 2

    def forward(self, x, mask):
        b, s, _ = x.shape
        q, k, v = (p(x).view(b, s, self.num_heads, 4) for p in (self.q, self.k, self.v))
        scores = torch.einsum("bqhd,bkhd->bqhk", q, k)  # (b, s, h, s)
        scores = scores.reshape(b, s // 2, 2, self.num_heads, s).flatten(1, 2)
        padded = torch.cat([mask, torch.zeros_like(mask[:, :1])], dim=1)[:, :s]
        probs = scores.softmax(-1).masked_fill(padded[:, :, None, None], 0.0)
        out = torch.einsum("bqhk,bkhd->bqhd", probs, v).reshape(b, s, self.num_heads * 4)
        return self.o(out)


def test_positions_that_cannot_be_one_axis_leave_the_heads_free():
    torch.manual_seed(0)
    x, mask = torch.randn(2, 6, 8), torch.zeros(2, 6, dtype=torch.bool)
    model = PaddedMask().eval()
    analysis = surgeon.analyze(model, (x, mask))
    heads = analysis.by_kind("attention")
    assert len(heads) == 1 and heads[0].frozen is None, [g.frozen for g in heads]
    plan = surgeon.Plan.for_analysis(analysis, {heads[0].id: [0]}, ())
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert surgeon.verify(model, pruned, plan, inputs=(x, mask), analysis=analysis).ok
