"""Attention written as einsums (CvT's ``bhlk,bhtk->bhlt``) or through
``scaled_dot_product_attention`` gives the groups its matmul form gives: heads
form an attention group, and a single head's width is frozen (q, k and v are
reshaped by one head_dim, so their channels cannot be cut apart)."""

import pytest
import torch
from torch import nn

import surgeon


class EinsumAttention(nn.Module):
    """CvT's self-attention: heads by an attribute, scores and context by einsum."""

    def __init__(self, heads: int, sdpa: bool = False) -> None:
        super().__init__()
        self.num_heads, self.embed_dim, self.sdpa = heads, 8 * heads, sdpa
        self.q, self.k, self.v = (nn.Linear(16, 8 * heads) for _ in range(3))
        self.o = nn.Linear(8 * heads, 16)

    def forward(self, x):
        b, t, _ = x.shape
        head_dim = self.embed_dim // self.num_heads
        q, k, v = (
            p(x).view(b, t, self.num_heads, head_dim).transpose(1, 2)
            for p in (self.q, self.k, self.v)
        )
        if self.sdpa:
            context = nn.functional.scaled_dot_product_attention(q, k, v)
        else:
            scores = torch.einsum("bhlk,bhtk->bhlt", q, k).softmax(-1)
            context = torch.einsum("bhlt,bhtv->bhlv", scores, v)
        return self.o(context.transpose(1, 2).reshape(b, t, self.embed_dim))


def _group_of(analysis, param):
    return next(
        g for g in analysis.groups if any(m.param == param and m.dim == 0 for m in g.members)
    )


def test_einsum_heads_form_an_attention_group():
    analysis = surgeon.analyze(EinsumAttention(3).eval(), torch.randn(2, 5, 16))
    (attention,) = analysis.by_kind("attention")
    assert (attention.kv_heads, attention.head_dim) == (3, 8)
    assert {"q.weight", "k.weight", "v.weight", "o.weight"} <= set(attention.params)


@pytest.mark.parametrize("sdpa", [False, True])
def test_one_heads_width_is_frozen(sdpa):
    analysis = surgeon.analyze(EinsumAttention(1, sdpa).eval(), torch.randn(2, 5, 16))
    for name in ("q.weight", "v.weight"):
        group = _group_of(analysis, name)
        assert group.frozen and "single attention head" in group.frozen
