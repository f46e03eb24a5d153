"""Attributes that model code reads about a group's width (head counts, split
sizes, expert counts), and the config fields that describe them.

Module attributes are updated on the modules that own a group's parameters and
on their parents (the attention module owns q_proj...), and only where the
current value equals the old width, so an unrelated attribute of the same name
is never touched. Config fields are updated when every group of a kind ends
with the same width (the plain HF config still describes the model); otherwise
the modules that read their config at forward time (Phi-3 splits its fused qkv
by ``config.num_attention_heads``) get a per-layer copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

from torch import nn

from surgeon.analyzers import Analysis, Group, GroupKind

from .attribute_table import (
    check_compared,
    compared_widths,
    head_widths,
    lists,
    set_width_attributes,
)
from .config_fields import attention_sizes, final_size, set_head_fields, update_width_fields
from .patterns import update_pattern_layers
from .resolve import GroupCut
from .state_space import delta_net_changes, state_space_changes
from .transaction import Transaction

__all__ = ["update_attributes"]

# attribute name -> how to compute it from (kv heads, queries per kv head, head_dim)
_ATTENTION_ATTRS: dict[str, Callable[[int, int, int], int]] = {
    "num_key_value_groups": lambda kv, q, hd: q,
    "num_key_value_heads": lambda kv, q, hd: kv,
    "num_kv_heads": lambda kv, q, hd: kv,
    "num_heads": lambda kv, q, hd: kv * q,
    "num_attention_heads": lambda kv, q, hd: kv * q,
    "heads": lambda kv, q, hd: kv * q,
    "n_heads": lambda kv, q, hd: kv * q,
    "n_head": lambda kv, q, hd: kv * q,  # OpenAI GPT splits its heads by it
    "all_head_size": lambda kv, q, hd: kv * q * hd,
    "inner_dim": lambda kv, q, hd: kv * q * hd,
    "split_size": lambda kv, q, hd: kv * q * hd,
    "embed_dim": lambda kv, q, hd: kv * q * hd,  # the attention module only (HEAD_WIDTH_ONLY)
    "kv_dim": lambda kv, q, hd: kv * hd,
    "attn_dim": lambda kv, q, hd: kv * q * hd,  # timm's Attention reshapes its output by it
    # Kimi-style delta attention splits its concatenated q/k/v by [qkv_dim] * 3
    "qkv_dim": lambda kv, q, hd: kv * q * hd,
    "num_kv_groups": lambda kv, q, hd: q,
    # gated delta nets (OLMo-Hybrid): key heads, value heads
    "num_k_heads": lambda kv, q, hd: kv,
    "num_v_heads": lambda kv, q, hd: kv * q,
}
_WIDTH_ATTRS = {
    # kv_lora_rank: MLA splits its compressed KV by it (DeepSeek-V2/V3)
    # Mamba splits x_proj's output by time_step_rank and ssm_state_size
    # hidden_size_output: Hiera's last stage, one layer wide, is a stream of one block
    GroupKind.MLP: (
        "intermediate_size",
        "hidden_size_output",
        "ffn_dim",
        "intermediate_dim",
        "kv_lora_rank",
        "ssm_state_size",
        "time_step_rank",
    ),
    GroupKind.EXPERT_MLP: ("intermediate_dim", "intermediate_size", "moe_intermediate_size"),
    GroupKind.EXPERTS: ("num_experts", "num_local_experts", "n_routed_experts"),
    # only where the table lists it (MobileViTV2's linear attention splits its fused
    # qkv conv by embed_dim, the width of its key and value channels)
    GroupKind.CHANNELS: ("embed_dim",),
    # input_size: GraniteMoE's experts reshape their output by it; dim_norm: CPM-Ant's norm;
    # hidden_size_per_layer_input: Gemma-4 splits its per-layer embedding stream by it
    GroupKind.HIDDEN: (
        "hidden_size",
        "hidden_size_per_layer_input",
        "hidden_size_output",  # HieraLayer: its stage's width (projects when it differs)
        "hidden_dim",
        "d_model",
        "embed_dim",
        "n_embd",
        "input_size",
        "dim_norm",
        "normalized_shape",  # a tuple: its last entry (OLMo's LayerNorm has no weight)
    ),
}
# a group whose units are blocks of rows (heads outside an attention: DeepSeek's
# sparse-attention indexer reshapes its queries by ``n_heads``) is counted by these
_HEAD_COUNTS = ("n_heads", "num_heads", "num_attention_heads", "heads")
_HEAD_WIDTHS = ("embed_dim", "all_head_size", "inner_dim", "lru_width")
# the width of each head's block of rows, the trailing factor of heads x width
# (RecurrentGemma's RG-LRU reshapes its input by num_attention_heads x block_width)
_BLOCK_WIDTHS = ("block_width",)
# the count of a group's leading blocks, by kind: DeepSeek-V3's router views its
# experts as (num_group routing groups) x (experts per group)
_BLOCK_COUNTS = {GroupKind.EXPERTS: ("num_group", "n_group")}
# key/value widths named like the hidden size: set only on classes the table lists
# for them (JetMoE's mixture of attention heads keeps kv heads x head_dim as hidden_size)
_LISTED_KV_WIDTHS = ("hidden_size",)
# a projection's own width (heads x its per-head width), read by the code: LeViT's
# attention reshapes its heads' output by out_dim_projection; xLSTM's mLSTM splits
# its fused projection by qk_dim and v_dim and checks its output against v_dim;
# Hiera's mask-unit attention reshapes its heads' output by hidden_size_output
_MEMBER_WIDTHS = ("out_dim_projection", "qk_dim", "v_dim", "hidden_size_output")
# the channels of a single head (an attention of one head, its q, k and v fused in
# one group): its head_dim and its heads' width, set on that attention alone (Hiera)
_ONE_HEAD_WIDTHS = ("head_dim", *_MEMBER_WIDTHS)


def update_attributes(
    model: nn.Module,
    analysis: Analysis,
    cuts: Iterable[GroupCut],
    tx: Transaction,
    removed_blocks: Iterable[str] = (),
) -> None:
    """``removed_blocks``: blocks the plan removes; their groups leave with them,
    so they do not count against a uniform width in the config."""
    cuts = list(cuts)
    config = getattr(model, "config", None)
    by_id = {cut.group.id: cut for cut in cuts}
    gone = tuple(f"{name}." for name in removed_blocks)
    survivors = [g for g in analysis.prunable if not _inside(g, gone)]
    attention = [g for g in survivors if g.kind == GroupKind.ATTENTION]
    uniform = len({final_size(g, by_id.get(g.id)) for g in attention}) <= 1
    copies: dict[int, object] = {}
    compared = compared_widths(model)
    for cut in cuts:
        modules = _owners(model, cut.group)
        paths = _owner_paths(cut.group)
        # the module holding the projections: where a head width named like the
        # hidden size (embed_dim) is the heads' width
        holders = {m.module.rpartition(".")[0] for m in cut.group.members}
        if cut.group.kind == GroupKind.HIDDEN:
            holders = set()
        for module in modules:  # LeViT caches its biases per head in eval mode
            if getattr(module, "attention_bias_cache", None):
                tx.set(module, "attention_bias_cache", {})
        for old, new, names in _changes(cut, cuts):
            for path, module in zip(paths, modules, strict=True):
                if names is _LISTED_KV_WIDTHS and not lists(module, names[0]):
                    continue
                inner = path in holders or (
                    cut.group.kind == GroupKind.CHANNELS and lists(module, "embed_dim")
                )
                if names is _ONE_HEAD_WIDTHS and not (inner and _one_head(module)):
                    continue
                own = names  # a heads' width of this class only in a head cut
                if not (inner and names in (_MEMBER_WIDTHS, _ONE_HEAD_WIDTHS)):
                    own = [n for n in names if n not in head_widths(module)]
                set_width_attributes(module, path, own, old, new, tx, inner)
        if cut.group.kind == GroupKind.ATTENTION:
            (kv, q), (kv2, q2), head_dim = attention_sizes(cut)
            update_pattern_layers(
                list(zip(paths, modules, strict=True)), (kv * q, kv2 * q2), (kv, kv2), head_dim, tx
            )
        if config is not None and not uniform:
            _per_module_configs(cut, modules, config, tx, copies)
    check_compared(compared)
    if config is not None:
        update_width_fields(config, survivors, cuts, tx, model)


def _inside(group: Group, prefixes: tuple[str, ...]) -> bool:
    return bool(prefixes) and all(m.module.startswith(prefixes) for m in group.members)


def _owners(model: nn.Module, group: Group) -> list[nn.Module]:
    return [model.get_submodule(p) for p in _owner_paths(group)]


def _owner_paths(group: Group) -> list[str]:
    """Modules owning the group's parameters, their parents, and every module
    whose ops carry its axes (OLMo's weightless LayerNorm reads the hidden size)."""
    paths = set(group.touching)
    for member in group.members:
        paths.add(member.module)
        paths.add(member.module.rpartition(".")[0])
    return sorted(paths)


def _changes(cut: GroupCut, cuts: list[GroupCut] = ()):
    """(old value, new value, attribute names) triples for one cut."""
    group = cut.group
    if group.kind == GroupKind.ATTENTION:
        (kv, q), (kv2, q2), hd = attention_sizes(cut)
        for name, rule in _ATTENTION_ATTRS.items():
            yield rule(kv, q, hd), rule(kv2, q2, hd), (name,)
        # a width that is heads x a per-head width other than head_dim (LeViT's
        # value heads are attention_ratio x key_dim wide): each member's own width
        for old, new in _member_widths(cut, group.members):
            yield old, new, _MEMBER_WIDTHS
        yield kv * hd, kv2 * hd, _LISTED_KV_WIDTHS
        yield from delta_net_changes(cut, cuts)
    elif group.kind == GroupKind.HIDDEN:
        # with hyper-connections the residual stream is hidden x streams: each level
        # that loses units is a width the code may read (the router's ``hidden_dim``)
        for level in group.levels:
            kept = cut.kept_size(level.name)
            if kept != level.size:
                yield level.size, kept, _WIDTH_ATTRS[group.kind]
    else:
        if group.kind in _WIDTH_ATTRS and len(group.levels) == 1:
            yield group.size, cut.kept_size(group.levels[0].name), _WIDTH_ATTRS[group.kind]
            yield group.size, cut.kept_size(group.levels[0].name), _ONE_HEAD_WIDTHS
        elif group.kind in _WIDTH_ATTRS:  # experts in routing groups: the total counts
            for old, new in _member_widths(cut, group.members):
                yield old, new, _WIDTH_ATTRS[group.kind]
        for level in group.levels:
            kept = cut.kept_size(level.name)
            headed = [m for m in group.members if _heads_of(m.layout, level.name)]
            if kept != level.size and headed:
                yield level.size, kept, _HEAD_COUNTS + _BLOCK_COUNTS.get(group.kind, ())
                # and the heads' total width, which the code reshapes their output by
                for old, new in _member_widths(cut, headed, changed_only=False):
                    yield old, new, _HEAD_WIDTHS
            blocked = [m for m in group.members if _blocks_of(m.layout, level.name)]
            if kept != level.size and blocked:
                yield level.size, kept, _BLOCK_WIDTHS
                for old, new in _member_widths(cut, blocked, changed_only=False):
                    yield old, new, _HEAD_WIDTHS
        # a Mamba-2 style mixer splits its fused in_proj by widths it computed
        yield from state_space_changes(cut, cuts)


def _member_widths(cut: GroupCut, members, changed_only: bool = True) -> list[tuple[int, int]]:
    """(old, new) widths of the members' cut axes, each pair once, in order."""
    widths = {(m.layout.size, len(m.layout.indices(cut.kept))) for m in members}
    return sorted((old, new) for old, new in widths if old != new or not changed_only)


def _one_head(module: nn.Module) -> bool:
    """An attention of a single head (its head count an attribute equal to 1)."""
    return any(getattr(module, name, None) == 1 for name in _HEAD_COUNTS)


def _heads_of(layout, level: str) -> bool:
    """Whether ``level`` counts blocks of rows in ``layout`` (heads of some width:
    the leading factor of a product), so the code reshapes by its count."""
    return _factor_of(layout, level, 0)


def _blocks_of(layout, level: str) -> bool:
    """Whether ``level`` is the width of each block of rows in ``layout`` (the
    trailing factor of a product whose leading factor counts heads of the group),
    so the code reshapes by it."""
    return _factor_of(layout, level, -1)


def _factor_of(layout, level: str, at: int) -> bool:
    """Whether ``level`` is factor ``at`` of a product of units in ``layout``
    (of any part of a concatenation)."""
    if layout.kind == "concat":
        return any(_factor_of(part, level, at) for part in layout.parts)
    return (
        layout.kind == "product"
        and len(layout.parts) > 1
        and layout.parts[0].kind == "unit"
        and layout.parts[at].kind == "unit"
        and layout.parts[at].level == level
    )


def _per_module_configs(cut, modules, config, tx, copies) -> None:
    """Modules that read head counts from their config get their own copy."""
    if cut.group.kind != GroupKind.ATTENTION:
        return
    (kv, q), (kv2, q2), hd = attention_sizes(cut)
    for module in modules:
        if getattr(module, "config", None) is not config and id(module) not in copies:
            continue
        own = copies.get(id(module))
        if own is None:
            own = copy.copy(config)
            copies[id(module)] = own
            tx.set(module, "config", own)
        set_head_fields(own, (kv, q), (kv2, q2), hd, tx)
