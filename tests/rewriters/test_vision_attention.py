"""Head cuts on vision attention written as timm and torchvision write it
(classes rebuilt here under their libraries' names: CI has neither library):
timm's ``attn_dim`` is updated; torchvision Swin's head width, computed from
its input as ``C // num_heads``, makes its heads uncuttable, said up front."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import surgeon
from surgeon.errors import PlanError, SurgeonError


class Attention(nn.Module):
    """timm.layers.attention.Attention: reshapes its output by ``attn_dim``."""

    def __init__(self, dim: int = 32, num_heads: int = 4) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.attn_dim = self.num_heads * self.head_dim
        self.qkv = nn.Linear(dim, self.attn_dim * 3)
        self.proj = nn.Linear(self.attn_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, self.attn_dim))


Attention.__module__ = "timm.layers.attention"


class ShiftedWindowAttention(nn.Module):
    """torchvision's Swin attention: the head width comes from the input."""

    def __init__(self, dim: int = 32, num_heads: int = 4) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, -1))


ShiftedWindowAttention.__module__ = "torchvision.models.swin_transformer"


class Block(nn.Module):
    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(32)
        self.attn = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x))


def test_timm_attention_heads_are_cut_and_attn_dim_follows():
    torch.manual_seed(0)
    model, x = Block(Attention()).eval(), torch.randn(2, 5, 32)
    result = surgeon.prune(
        model, 0.3, criterion="magnitude", inputs=x, kinds=("attention",), progress=False
    )
    attn = result.model.attn
    assert attn.num_heads < 4 and attn.attn_dim == attn.num_heads * 8
    assert attn.proj.in_features == attn.attn_dim
    assert result.report.verification.ok and not result.report.verification.weak


def test_swin_heads_are_frozen_up_front_naming_the_module():
    torch.manual_seed(0)
    model, x = Block(ShiftedWindowAttention()).eval(), torch.randn(2, 5, 32)
    analysis = surgeon.analyze(model, x)
    (attention,) = analysis.by_kind("attention")
    assert attention.frozen.startswith("module 'attn' (ShiftedWindowAttention) computes its head")
    assert "C // num_heads" in attention.frozen
    with pytest.raises((PlanError, SurgeonError), match="attn"):
        surgeon.apply(model, {attention.id: [0, 1]}, analysis=analysis)
