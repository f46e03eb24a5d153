"""Head cuts update the widths attention code reads under less common names:
``qkv_dim`` (Kimi-style delta attention splits its fused q/k/v by it),
``out_dim_projection`` (LeViT: value heads wider than head_dim), and empty
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
