"""Transformers written the common way in plain PyTorch (no transformers
library), each habit switchable: a ``ModuleList`` holding ``None`` entries, a
position-bias table cached on the module during forward, a mask buffer
registered inside forward, einops ``Rearrange`` layers carrying the head count.

Sizes: width 32, 4 heads of 8, MLP 48, vocabulary 50, sequences of 6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

WIDTH, HEADS, MLP, VOCAB, SEQUENCE = 32, 4, 48, 50, 6


@dataclass(frozen=True)
class Habits:
    none_entries: bool = False  # ModuleLists with None where a layer is skipped
    cached_table: bool = False  # self.bias_table = ... set on first forward
    forward_buffer: bool = False  # self.register_buffer(...) inside forward
    buffer_in_init: bool = False  # the same mask registered in __init__ instead
    rearrange: bool = False  # einops Rearrange(..., h=heads) splits and merges heads


class Attention(nn.Module):
    def __init__(self, habits: Habits) -> None:
        super().__init__()
        self.heads, self.head_dim = HEADS, WIDTH // HEADS
        self.habits = habits
        self.to_qkv = nn.Linear(WIDTH, 3 * WIDTH, bias=False)
        self.to_out = nn.Linear(WIDTH, WIDTH)
        if habits.rearrange:
            from einops.layers.torch import Rearrange

            self.split_heads = Rearrange("b n (three h d) -> three b h n d", three=3, h=HEADS)
            self.merge_heads = Rearrange("b h n d -> b n (h d)")
        if habits.buffer_in_init:
            self.register_buffer("causal", _causal(SEQUENCE), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.to_qkv(x)
        if self.habits.rearrange:
            q, k, v = self.split_heads(qkv)
        else:
            q, k, v = qkv.view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        if self.habits.cached_table:
            if not hasattr(self, "bias_table"):  # built once, on first use
                position = torch.arange(n)
                self.bias_table = -(position[None] - position[:, None]).abs().float() / n
            scores = scores + self.bias_table
        if self.habits.forward_buffer and not hasattr(self, "causal"):
            self.register_buffer("causal", _causal(n), persistent=False)
        if self.habits.forward_buffer or self.habits.buffer_in_init:
            scores = scores.masked_fill(self.causal, float("-inf"))
        out = scores.softmax(-1) @ v
        if self.habits.rearrange:
            out = self.merge_heads(out)
        else:
            out = out.transpose(1, 2).reshape(b, n, -1)
        return self.to_out(out)


def _causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).triu(1)


class Block(nn.Module):
    def __init__(self, habits: Habits) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.attn = Attention(habits)
        self.mlp = nn.Sequential(nn.Linear(WIDTH, MLP), nn.GELU(), nn.Linear(MLP, WIDTH))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PlainTransformer(nn.Module):
    def __init__(self, habits: Habits, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        blocks: list[nn.Module | None] = [Block(habits) for _ in range(layers)]
        if habits.none_entries:
            blocks.insert(1, None)  # a skipped position between two layers
            self.adapters = nn.ModuleList([None] * layers)  # none of them in use
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            if block is not None:
                x = block(x)
        return self.head(self.norm(x))


def plain_transformer(**habits: bool) -> PlainTransformer:
    torch.manual_seed(0)
    return PlainTransformer(Habits(**habits)).eval()


def token_ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, SEQUENCE), generator=torch.Generator().manual_seed(0))
