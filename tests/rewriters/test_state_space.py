"""Mamba-2 style mixers split their fused in_proj by widths computed at build time
(intermediate_size, conv_dim, num_heads, n_groups * ssm_state_size) and reshape
by head_dim and the gated norm's group_size: a cut of any level of the mixer's
channels group updates every one of them, and the cut runs and verifies."""

import pytest
import transformers as hf

import surgeon
from tests.zoo import tiny


def _mamba2(n_groups: int):
    return tiny(
        hf.Mamba2ForCausalLM,
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=1,
        num_heads=8,
        head_dim=8,
        expand=2,
        state_size=8,
        n_groups=n_groups,
        chunk_size=16,
    )


def _cut(model, level: int):
    analysis = surgeon.analyze(model)
    (group,) = analysis.by_kind("channels")
    pruned, report = _cut_level(model, analysis, group, level)
    return group, pruned.backbone.layers[0].mixer, report


def _cut_level(model, analysis, group, level: int):
    """Every other unit of the group's ``level``-th level."""
    kept = {lv.name: list(range(lv.size)) for lv in group.levels}
    name = group.levels[level].name
    kept[name] = kept[name][::2]
    from surgeon.rewriters.resolve import units_of

    plan = surgeon.Plan.for_analysis(analysis, {group.id: units_of(kept, group)})
    pruned = surgeon.apply(model, plan, analysis=analysis)
    return pruned, surgeon.verify(model, pruned, plan, analysis=analysis)


def _consistent(mixer):
    assert mixer.intermediate_size == mixer.num_heads * mixer.head_dim
    assert mixer.conv_dim == mixer.intermediate_size + 2 * mixer.n_groups * mixer.ssm_state_size
    assert mixer.norm.group_size == mixer.intermediate_size // mixer.n_groups
    assert mixer.in_proj.out_features == mixer.intermediate_size + mixer.conv_dim + mixer.num_heads


@pytest.mark.parametrize(
    ("level", "exact", "sizes"),
    [
        (0, True, (4, 8, 8)),  # heads (one B/C group each)
        (1, False, (8, 4, 8)),  # head_dim: the gated norm's groups lose channels
        (2, True, (8, 8, 4)),  # the state
    ],
)
def test_mamba2_one_group_per_head(level, exact, sizes):
    group, mixer, report = _cut(_mamba2(n_groups=8), level)
    assert [lv.size for lv in group.levels] == [8, 8, 8]
    assert (mixer.num_heads, mixer.head_dim, mixer.ssm_state_size) == sizes
    assert mixer.n_groups == mixer.num_heads
    _consistent(mixer)
    assert report.ok == exact, report
    if not exact:
        assert group.id in report.inexact


def test_mamba2_heads_within_groups():
    # 2 B/C groups of 4 heads: levels groups x heads per group x head_dim x state
    group, mixer, report = _cut(_mamba2(n_groups=2), 1)
    assert [lv.size for lv in group.levels] == [2, 4, 8, 8]
    assert (mixer.n_groups, mixer.num_heads, mixer.norm.group_size) == (2, 4, 16)
    _consistent(mixer)
    assert set(report.inexact) <= {group.id}  # the gated norm spans a group's heads


def test_zamba_mixer_head_dim_state_and_time_step_cut_exactly():
    """Zamba's mixer runs n_mamba_heads Mamba heads side by side: its head count is
    fixed, the head_dim (mamba_head_dim), the state and the time step rank are cut
    (the per-head x_proj is a 3-d parameter, so they are channels groups)."""
    model = tiny(
        hf.ZambaForCausalLM,
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=1,
        n_mamba_heads=2,
        mamba_d_state=8,
        mamba_dt_rank=6,
        layer_types=["linear_attention"],
    )
    analysis = surgeon.analyze(model)
    groups = analysis.by_kind("channels")
    assert sorted(g.size for g in groups) == [6, 8, 32]
    keep = {g.id: list(range(0, g.size, 2)) for g in groups}
    plan = surgeon.Plan.for_analysis(analysis, keep)
    pruned = surgeon.apply(model, plan, analysis=analysis)
    report = surgeon.verify(model, pruned, plan, analysis=analysis)
    assert report.ok, report
    mixer = pruned.model.layers[0].mamba
    assert (mixer.n_mamba_heads, mixer.mamba_head_dim, mixer.intermediate_size) == (2, 16, 32)
    assert (mixer.ssm_state_size, mixer.time_step_rank) == (4, 3)


@pytest.mark.parametrize(("level", "sizes"), [(0, (2, 8, 16)), (1, (4, 4, 16))])
def test_rg_lru_heads_and_block_width_cut_exactly(level, sizes):
    """RecurrentGemma's RG-LRU gates each of its heads by a block-diagonal matrix:
    it reshapes by num_attention_heads x block_width, either of them cut."""
    model = tiny(
        hf.RecurrentGemmaForCausalLM,
        vocab_size=64,
        hidden_size=32,
        lru_width=32,
        intermediate_size=48,
        num_attention_heads=4,
        num_hidden_layers=1,
        block_types=["recurrent"],
    )
    analysis = surgeon.analyze(model)
    (group,) = analysis.by_kind("channels")
    assert [lv.size for lv in group.levels] == [4, 8]
    pruned, report = _cut_level(model, analysis, group, level)
    assert report.ok, report
    block = pruned.model.layers[0].temporal_block
    assert (block.rg_lru.num_attention_heads, block.rg_lru.block_width, block.lru_width) == sizes
