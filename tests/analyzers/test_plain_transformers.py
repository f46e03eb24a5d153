"""Analysis of plain-PyTorch transformers written the common way (tests/plain.py):
``None`` in a ModuleList, a tensor cached on the module in forward, a buffer
registered inside forward. One regression test per failure seen."""

from __future__ import annotations

import copy

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
