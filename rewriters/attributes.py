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

from .attribute_table import set_width_attributes
from .patterns import update_pattern_layers
from .resolve import GroupCut
from .transaction import Transaction

__all__ = ["CONFIG_FIELDS", "HEAD_FIELDS", "update_attributes"]

# attribute name -> how to compute it from (kv heads, queries per kv head, head_dim)
_ATTENTION_ATTRS: dict[str, Callable[[int, int, int], int]] = {
    "num_key_value_groups": lambda kv, q, hd: q,
    "num_key_value_heads": lambda kv, q, hd: kv,
    "num_kv_heads": lambda kv, q, hd: kv,
    "num_heads": lambda kv, q, hd: kv * q,
    "num_attention_heads": lambda kv, q, hd: kv * q,
    "heads": lambda kv, q, hd: kv * q,
    "n_heads": lambda kv, q, hd: kv * q,
    "all_head_size": lambda kv, q, hd: kv * q * hd,
    "inner_dim": lambda kv, q, hd: kv * q * hd,
    "split_size": lambda kv, q, hd: kv * q * hd,
    "embed_dim": lambda kv, q, hd: kv * q * hd,  # table classes only (HEAD_WIDTH_ONLY)
    "kv_dim": lambda kv, q, hd: kv * hd,
    "attn_dim": lambda kv, q, hd: kv * q * hd,  # timm's Attention reshapes its output by it
    "num_kv_groups": lambda kv, q, hd: q,
}
_WIDTH_ATTRS = {
    # kv_lora_rank: MLA splits its compressed KV by it (DeepSeek-V2/V3)
    # Mamba splits x_proj's output by time_step_rank and ssm_state_size
    GroupKind.MLP: (
        "intermediate_size",
        "ffn_dim",
        "intermediate_dim",
        "kv_lora_rank",
        "ssm_state_size",
        "time_step_rank",
    ),
    GroupKind.EXPERT_MLP: ("intermediate_dim", "intermediate_size", "moe_intermediate_size"),
    GroupKind.EXPERTS: ("num_experts", "num_local_experts", "n_routed_experts"),
    GroupKind.HIDDEN: ("hidden_size", "hidden_dim", "d_model", "embed_dim", "n_embd"),
}
# config fields holding one width of a kind for every layer (a ragged cut leaves them untrue)
CONFIG_FIELDS = {
    GroupKind.MLP: ("intermediate_size", "ffn_dim", "n_inner", "d_ff", "ffn_hidden_size"),
    GroupKind.EXPERT_MLP: ("moe_intermediate_size", "intermediate_size"),
    GroupKind.EXPERTS: ("num_local_experts", "num_experts"),
    GroupKind.HIDDEN: ("hidden_size", "n_embd", "d_model"),
}
# config fields holding a head count: of query heads (True) or of KV heads (False)
HEAD_FIELDS = {
    "num_attention_heads": True,
    "num_key_value_heads": False,
    "n_head": True,
    "num_heads": True,
    "num_kv_heads": False,
}


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
    uniform = len({_final(g, by_id.get(g.id)) for g in attention}) <= 1
    copies: dict[int, object] = {}
    for cut in cuts:
        modules = _owners(model, cut.group)
        paths = _owner_paths(cut.group)
        for old, new, names in _changes(cut):
            for path, module in zip(paths, modules, strict=True):
                heads = cut.group.kind == GroupKind.ATTENTION
                set_width_attributes(module, path, names, old, new, tx, heads)
        if cut.group.kind == GroupKind.ATTENTION:
            (kv, q), (kv2, q2), head_dim = _attention_sizes(cut)
            named = [(path, model.get_submodule(path)) for path in _owner_paths(cut.group)]
            update_pattern_layers(named, (kv * q, kv2 * q2), (kv, kv2), head_dim, tx)
        if config is not None and not uniform:
            _per_module_configs(cut, modules, config, tx, copies)
    if config is not None:
        _update_config(config, survivors, cuts, tx)


def _inside(group: Group, prefixes: tuple[str, ...]) -> bool:
    return bool(prefixes) and all(m.module.startswith(prefixes) for m in group.members)


def _owners(model: nn.Module, group: Group) -> list[nn.Module]:
    return [model.get_submodule(p) for p in _owner_paths(group)]


def _owner_paths(group: Group) -> list[str]:
    paths = set()
    for member in group.members:
        paths.add(member.module)
        paths.add(member.module.rpartition(".")[0])
    return sorted(paths)


def _attention_sizes(cut: GroupCut) -> tuple[tuple[int, int], tuple[int, int], int]:
    group = cut.group
    old = (group.kv_heads, group.q_per_kv)
    new = (len(cut.kept.get("kv", (0,))), len(cut.kept.get("q", (0,))))
    return old, new, group.head_dim or 1


def _changes(cut: GroupCut):
    """(old value, new value, attribute names) triples for one cut."""
    group = cut.group
    if group.kind == GroupKind.ATTENTION:
        (kv, q), (kv2, q2), hd = _attention_sizes(cut)
        for name, rule in _ATTENTION_ATTRS.items():
            yield rule(kv, q, hd), rule(kv2, q2, hd), (name,)
    elif group.kind in _WIDTH_ATTRS and len(group.levels) == 1:
        yield group.size, cut.kept_size(group.levels[0].name), _WIDTH_ATTRS[group.kind]


def _per_module_configs(cut, modules, config, tx, copies) -> None:
    """Modules that read head counts from their config get their own copy."""
    if cut.group.kind != GroupKind.ATTENTION:
        return
    (kv, q), (kv2, q2), hd = _attention_sizes(cut)
    for module in modules:
        if getattr(module, "config", None) is not config and id(module) not in copies:
            continue
        own = copies.get(id(module))
        if own is None:
            own = copy.copy(config)
            copies[id(module)] = own
            tx.set(module, "config", own)
        _set_heads(own, (kv, q), (kv2, q2), hd, tx)


def _set_heads(config, old, new, head_dim, tx) -> None:
    (kv, q), (kv2, q2) = old, new
    if getattr(config, "head_dim", None) in (None, 0) and hasattr(config, "num_attention_heads"):
        tx.set(config, "head_dim", head_dim)
    for name, queries in HEAD_FIELDS.items():
        value, fresh = (kv * q, kv2 * q2) if queries else (kv, kv2)
        if getattr(config, name, None) == value:
            tx.set(config, name, fresh)


def _update_config(config, prunable: list[Group], cuts: list[GroupCut], tx: Transaction) -> None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    by_id = {cut.group.id: cut for cut in cuts}
    for kind in (*CONFIG_FIELDS, GroupKind.ATTENTION):
        groups = [g for g in prunable if g.kind == kind]
        if not groups or not any(g.id in by_id for g in groups):
            continue
        finals = {_final(g, by_id.get(g.id)) for g in groups}
        if len(finals) != 1:
            continue  # non-uniform: the config cannot describe every layer
        (final,) = finals
        if kind == GroupKind.ATTENTION:
            old = (groups[0].kv_heads, groups[0].q_per_kv)
            _set_heads(text, old, final, groups[0].head_dim or 1, tx)
            continue
        old = groups[0].size
        names = [n for n in CONFIG_FIELDS[kind] if getattr(text, n, None) == old]
        if not names and kind == GroupKind.MLP:
            # a field left None means "derived" (GPT-2's n_inner: 4 x n_embd):
            # the cut width is written explicitly instead
            names = [n for n in CONFIG_FIELDS[kind] if n in vars(text) and vars(text)[n] is None]
        for name in names:
            if kind == GroupKind.HIDDEN:
                _pin_head_dim(text, tx)
            tx.set(text, name, final)


def _final(group: Group, cut: GroupCut | None):
    if group.kind == GroupKind.ATTENTION:
        if cut is None:
            return (group.kv_heads, group.q_per_kv)
        return _attention_sizes(cut)[1]
    return group.size if cut is None else cut.kept_size(group.levels[0].name)


def _pin_head_dim(config, tx: Transaction) -> None:
    """A config deriving head_dim from hidden_size must keep it when hidden shrinks."""
    heads = getattr(config, "num_attention_heads", None)
    if getattr(config, "head_dim", None) in (None, 0) and heads:
        tx.set(config, "head_dim", config.hidden_size // heads)
