"""einops pattern layers carrying a head count, and the training flags of the
copy ``apply`` returns (a Rearrange rebuilds itself when deep-copied)."""

from __future__ import annotations

import pytest
from einops.layers.torch import Rearrange
from torch import nn

import surgeon
from surgeon.rewriters.patterns import update_pattern_layers
from surgeon.rewriters.transaction import Transaction
from tests.plain import plain_transformer, token_ids


def test_a_head_cut_rebuilds_rearrange_layers_with_the_new_head_count():
    # was: refused after the cut, naming '<root>' (the layers still split 4 heads)
    model = plain_transformer(rearrange=True)
    analysis = surgeon.analyze(model, token_ids())
    keep = {g.id: [0, 2] for g in analysis.by_kind("attention")}
    plan = surgeon.Plan.for_analysis(analysis, keep)
    pruned = surgeon.apply(model, plan, analysis=analysis)
    attn = pruned.blocks[0].attn
    assert attn.split_heads.axes_lengths == {"three": 3, "h": 2}
    assert attn.merge_heads.axes_lengths == {}
    assert attn.heads == 2 and attn.to_qkv.out_features == 48
    assert model.blocks[0].attn.split_heads.axes_lengths == {"three": 3, "h": 4}
    report = surgeon.verify(model, pruned, plan, token_ids(), analysis=analysis)
    assert report.ok and report.max_rel <= report.tolerance and not report.weak


@pytest.mark.parametrize("training", [False, True])
def test_the_copy_keeps_every_modules_training_flag(training):
    # was: each Rearrange came back in training mode, so verify refused the copy
    model = plain_transformer(rearrange=True).train(training)
    model.blocks[1].eval()  # mixed flags are kept as they are, too
    analysis = surgeon.analyze(model, token_ids())
    mlp = analysis.by_kind("mlp")[0]
    pruned = surgeon.apply(model, {mlp.id: list(range(0, mlp.size, 2))}, analysis=analysis)
    flags = [(name, m.training) for name, m in model.named_modules()]
    assert [(name, m.training) for name, m in pruned.named_modules()] == flags
    in_block_1 = 12  # the block, 2 norms, attention with 4 children, the MLP with 3
    assert sum(training for _, training in flags) == (len(flags) - in_block_1 if training else 0)


class _Holder(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer


def _update(pattern: str, **lengths: int) -> dict:
    holder = _Holder(Rearrange(pattern, **lengths).eval())
    update_pattern_layers([("attn", holder)], (4, 2), (4, 2), 4, Transaction())
    assert not holder.layer.training
    return holder.layer.axes_lengths


def test_the_head_size_is_told_from_the_head_count_by_its_place_in_the_pattern():
    # 4 heads of size 4: 'd' is the inner factor of (h d), so it is the head size
    assert _update("b n (h d) -> b h n d", h=4) == {"h": 2}
    assert _update("b n (h d) -> b h n d", d=4) == {"d": 4}
    assert _update("b n (h d) -> b h n d", h=4, d=4) == {"h": 2, "d": 4}


def test_an_ambiguous_length_is_refused_naming_the_layer():
    with pytest.raises(surgeon.RewriteError, match=r"pattern layer 'attn.layer'.*h=4"):
        _update("b n h d -> b h n d", h=4)
