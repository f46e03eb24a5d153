"""Head cuts update the widths attention code reads under less common names:
``qkv_dim`` (Kimi-style delta attention splits its fused q/k/v by it),
``out_dim_projection`` (LeViT: value heads wider than head_dim), ``qk_dim`` and
``v_dim`` (xLSTM, with log-sigmoid gates per head), and empty
LeViT's eval-mode ``attention_bias_cache``."""

import torch
from torch import nn

import surgeon


class Heads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.num_heads, self.key_dim = 4, 2
        self.qkv_dim = self.num_heads * self.key_dim
        self.out_dim_projection = self.num_heads * 2 * self.key_dim  # values twice as wide
        self.q = nn.Linear(8, self.qkv_dim)
        self.k = nn.Linear(8, self.qkv_dim)
        self.v = nn.Linear(8, self.out_dim_projection)
        self.proj = nn.Linear(self.out_dim_projection, 8)
        self.attention_bias_cache: dict = {}

    def forward(self, x):
        b, s, _ = x.shape
        fused = torch.cat([self.q(x), self.k(x)], dim=-1)
        q, k = torch.split(fused, [self.qkv_dim] * 2, dim=-1)
        q, k = (t.view(b, s, self.num_heads, -1).transpose(1, 2) for t in (q, k))
        v = self.v(x).view(b, s, self.num_heads, -1).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2) * 0.5).softmax(-1)
        out = (scores @ v).transpose(1, 2).reshape(b, s, self.out_dim_projection)
        return self.proj(out)


def test_head_cut_updates_qkv_dim_and_out_dim_projection():
    torch.manual_seed(0)
    model = Heads().eval()
    x = torch.randn(2, 5, 8)
    analysis = surgeon.analyze(model, x)
    group = analysis.by_kind("attention")[0]
    model.attention_bias_cache["cpu"] = torch.zeros(1)  # filled after the analysis
    plan = surgeon.Plan.for_analysis(analysis, {group.id: [0, 2, 3]}, ())
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert (pruned.num_heads, pruned.qkv_dim, pruned.out_dim_projection) == (3, 6, 12)
    assert pruned.attention_bias_cache == {}
    assert model.attention_bias_cache  # the original keeps its own
    assert surgeon.verify(model, pruned, plan, inputs=x, analysis=analysis).ok


class GatedHeads(nn.Module):
    """xLSTM's mLSTM: keys narrower than values (qk_dim, v_dim), log-sigmoid
    forget gates per head, the heads' output checked against v_dim."""

    def __init__(self) -> None:
        super().__init__()
        self.num_heads = 4
        self.qk_dim, self.v_dim = 8, 16
        self.q = nn.Linear(8, self.qk_dim)
        self.k = nn.Linear(8, self.qk_dim)
        self.v = nn.Linear(8, self.v_dim)
        self.gate = nn.Linear(8, self.num_heads)
        self.out = nn.Linear(self.v_dim, 8)

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = (
            p(x).view(b, s, self.num_heads, -1).transpose(1, 2) for p in (self.q, self.k, self.v)
        )
        forget = nn.functional.logsigmoid(self.gate(x)).transpose(1, 2).unsqueeze(-1)
        h = ((q @ k.transpose(-1, -2)).softmax(-1) + forget) @ v
        if h.shape[-1] != self.v_dim // self.num_heads:
            raise ValueError(f"expected {self.v_dim // self.num_heads} wide heads")
        return self.out(h.transpose(1, 2).reshape(b, s, self.v_dim))


def test_head_cut_updates_qk_dim_and_v_dim_through_log_sigmoid():
    torch.manual_seed(0)
    model = GatedHeads().eval()
    x = torch.randn(2, 5, 8)
    analysis = surgeon.analyze(model, x)
    assert not analysis.unknown_ops  # log_sigmoid has a rule
    group = analysis.by_kind("attention")[0]
    assert group.frozen is None and "gate.weight" in group.params
    plan = surgeon.Plan.for_analysis(analysis, {group.id: [1, 3]}, ())
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert (pruned.num_heads, pruned.qk_dim, pruned.v_dim) == (2, 4, 8)
    assert pruned.gate.out_features == 2
    assert surgeon.verify(model, pruned, plan, inputs=x, analysis=analysis).ok
