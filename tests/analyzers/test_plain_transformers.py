"""Analysis of plain-PyTorch transformers written the common way (tests/plain.py):
``None`` in a ModuleList, a tensor cached on the module in forward, a buffer
registered inside forward. One regression test per failure seen."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import surgeon
from surgeon.analyzers.untouched import diff, state_of
from tests.analyzers.test_zoo import table
from tests.plain import MLP, plain_transformer, token_ids


def test_none_entries_in_a_module_list_are_skipped_and_keep_their_positions():
    # was: IndexError in find_blocks/_repeated_children (an all-None ModuleList)
    model = plain_transformer(none_entries=True)
    analysis = surgeon.analyze(model, token_ids())
    assert [(b.name, b.container, b.index, b.removable) for b in analysis.blocks] == [
        ("blocks.0", "blocks", 0, True),
        ("blocks.2", "blocks", 2, True),
    ]
    assert {g.id for g in analysis.by_kind("mlp")} == {"mlp@blocks.0.mlp", "mlp@blocks.2.mlp"}


def test_removing_a_block_keeps_the_none_entries_of_its_container():
    model = plain_transformer(none_entries=True)
    analysis = surgeon.analyze(model, token_ids())
    plan = surgeon.Plan.for_analysis(analysis, {}, remove_blocks=["blocks.2"])
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert [type(m).__name__ for m in pruned.blocks._modules.values()] == ["Block", "NoneType"]
    assert surgeon.verify(model, pruned, plan, token_ids(), analysis=analysis).ok


def test_a_tensor_cached_on_the_module_in_forward_is_not_left_there():
    # was: a FakeTensor left on the module; the next forward and deepcopy failed
    model = plain_transformer(cached_table=True)
    before = state_of(model)
    surgeon.analyze(model, token_ids())
    assert not diff(before, state_of(model))
    assert not any(hasattr(block.attn, "bias_table") for block in model.blocks)
    fresh = copy.deepcopy(model)
    with torch.no_grad():
        assert torch.equal(model(token_ids()), plain_transformer(cached_table=True)(token_ids()))
    assert isinstance(fresh.blocks[0].attn, nn.Module)


def test_a_table_a_forward_already_cached_is_kept_as_it_was():
    model = plain_transformer(cached_table=True)
    with torch.no_grad():
        model(token_ids())
    table_before = model.blocks[0].attn.bias_table
    surgeon.analyze(model, token_ids())
    assert model.blocks[0].attn.bias_table is table_before
    assert type(table_before) is torch.Tensor


def test_a_buffer_registered_inside_forward_couples_like_one_registered_in_init():
    # was: AssertionError: cannot broadcast rank 2 into 1 (rules/context.py), from
    # export's write-back of the new buffer into the input ids
    registered_late = plain_transformer(forward_buffer=True)
    analysis = surgeon.analyze(registered_late, token_ids())
    assert table(analysis) == table(
        surgeon.analyze(plain_transformer(buffer_in_init=True), token_ids())
    )
    assert not any(name.endswith("causal") for name, _ in registered_late.named_buffers())
    assert [g.size for g in analysis.by_kind("mlp")] == [MLP, MLP]
    # only the interfaces: token ids look up rows, the logits are the output
    assert sorted(g.id for g in analysis.frozen) == ["output@head", "vocab@embed"]


class _HeadBiasAttention(nn.Module):
    """A per-head distance-bias table built on first use and kept (the same
    slope for every head: values taken from the head index would freeze it)."""

    def __init__(self, width: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, width // heads
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.alibi = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        if self.alibi is None or self.alibi.shape[-1] != n:
            slopes = torch.ones(self.num_heads, 1, 1)
            position = torch.arange(n)
            self.alibi = -slopes * (position[None] - position[:, None]).abs() / n
        scores = q @ k.transpose(-1, -2) / self.head_dim**0.5 + self.alibi
        return self.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1))


def test_a_per_head_table_cached_by_an_earlier_forward_keeps_the_heads_whole():
    # was: the cut refused after the fact, blaming "a size written into the code"
    torch.manual_seed(0)
    model, x = nn.Sequential(_HeadBiasAttention()).eval(), torch.randn(2, 6, 32)
    analysis = surgeon.analyze(model, x)
    (fresh,) = analysis.by_kind("attention")
    assert fresh.frozen is None  # built in forward: the cut copy rebuilds it
    plan = {fresh.id: [0, 2]}
    pruned = surgeon.apply(model, plan, analysis=analysis)
    report = surgeon.verify(model, pruned, plan, x, analysis=analysis)
    assert report.ok and not report.weak
    with torch.no_grad():
        model(x)  # the user ran it: a real 4-head table now sits on the module
    analysis = surgeon.analyze(model, x)
    (cached,) = analysis.by_kind("attention")
    assert "tensor attribute '0.alibi' is not a parameter or buffer" in cached.frozen
    with pytest.raises(surgeon.PlanError, match="register_buffer"):
        surgeon.apply(model, plan, analysis=analysis)
    assert model[0].alibi.shape == (4, 6, 6)
