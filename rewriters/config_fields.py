"""The config fields a cut changes, in one place: widths, head counts, layer counts.

A transformers config holds one value per kind for every layer. After a cut
it is updated where it can still describe the model: a width or head count
every surviving layer shares (:func:`update_width_fields`), and the layer
count and per-layer lists once blocks are removed (:func:`update_layer_fields`).
"""

from __future__ import annotations

from torch import nn

from surgeon.analyzers import Group, GroupKind

from .resolve import GroupCut
from .transaction import Transaction

__all__ = [
    "CONFIG_FIELDS",
    "HEAD_FIELDS",
    "LAYER_COUNT_FIELDS",
    "PER_LAYER_FIELDS",
    "attention_sizes",
    "final_size",
    "set_head_fields",
    "update_layer_fields",
    "update_width_fields",
]

# config fields holding one width of a kind for every layer (a ragged cut leaves them untrue)
CONFIG_FIELDS = {
    GroupKind.MLP: (
        "intermediate_size",
        "ffn_dim",
        "n_inner",
        "d_ff",
        "ffn_hidden_size",
        # a MoE's shared experts (Nemotron-H, Qwen2-MoE): an MLP of its own width
        "moe_shared_expert_intermediate_size",
        "shared_expert_intermediate_size",
        "shared_intermediate_size",  # GraniteMoE-shared/hybrid
    ),
    GroupKind.EXPERT_MLP: ("moe_intermediate_size", "intermediate_size"),
    GroupKind.EXPERTS: ("num_local_experts", "num_experts"),
    GroupKind.HIDDEN: ("hidden_size", "n_embd", "d_model", "hidden_size_per_layer_input"),
}
# config fields holding a head count: of query heads (True) or of KV heads (False)
HEAD_FIELDS = {
    "num_attention_heads": True,
    "num_key_value_heads": False,
    "n_head": True,
    "num_heads": True,
    "num_kv_heads": False,
}


LAYER_COUNT_FIELDS = ("num_hidden_layers", "n_layer", "num_layers")
PER_LAYER_FIELDS = ("layer_types",)


def set_head_fields(config, old, new, head_dim, tx) -> None:
    (kv, q), (kv2, q2) = old, new
    if _read(config, "head_dim") in (None, 0) and _read(config, "num_attention_heads") is not None:
        tx.set(config, "head_dim", head_dim)
    for name, queries in HEAD_FIELDS.items():
        value, fresh = (kv * q, kv2 * q2) if queries else (kv, kv2)
        if _read(config, name) == value:
            tx.set(config, name, fresh)


_PER_LAYER = object()  # equal to no width, never None: held, but by each layer's config


def _read(config, name: str):
    """A config field (None when absent); ``_PER_LAYER`` where the config refuses to
    give one value for every layer (a per-layer attribute of a heterogeneous config,
    Gemma-4's head_dim): it is neither updated nor derived from the global fields."""
    try:
        return getattr(config, name, None)
    except RuntimeError:  # transformers' AmbiguousGlobalPerLayerAttributeError
        return _PER_LAYER


def update_width_fields(
    config, prunable: list[Group], cuts: list[GroupCut], tx: Transaction, model=None
) -> None:
    """After a cut: the config's width and head-count fields, where every layer
    of a kind ends with the same width (else the config cannot describe them).
    Each group is described by the config its modules were built from (CLIP's
    vision MLPs by ``vision_config``), found through ``model`` when given."""
    by_id = {cut.group.id: cut for cut in cuts}
    for described, groups_of in _by_config(config, prunable, model):
        for kind in (*CONFIG_FIELDS, GroupKind.ATTENTION):
            groups = [g for g in groups_of if g.kind == kind]
            if groups and any(g.id in by_id for g in groups):
                _update_kind(described, kind, groups, by_id, tx)


def _update_kind(text, kind: GroupKind, groups: list[Group], by_id, tx: Transaction) -> None:
    if kind == GroupKind.ATTENTION:
        finals = {final_size(g, by_id.get(g.id)) for g in groups}
        if len(finals) == 1:  # else non-uniform: the config cannot describe every layer
            old = (groups[0].kv_heads, groups[0].q_per_kv)
            set_head_fields(text, old, finals.pop(), groups[0].head_dim or 1, tx)
        return
    # groups of one kind but of different widths are different fields (Gemma-4's
    # residual stream is hidden_size wide, its per-layer inputs hidden_size_per_layer_input):
    # each width is updated where every group of that width ends the same
    by_old: dict[int, set] = {}
    for group in groups:
        by_old.setdefault(group.size, set()).add(final_size(group, by_id.get(group.id)))
    changes = []  # all names first: one update never feeds the next
    for old, finals in by_old.items():
        if len(finals) != 1:
            continue  # non-uniform: the config cannot describe every layer
        names = [n for n in CONFIG_FIELDS[kind] if _read(text, n) == old]
        if not names and kind == GroupKind.MLP and len(by_old) == 1:
            # a field left None means "derived" (GPT-2's n_inner: 4 x n_embd):
            # the cut width is written explicitly instead
            names = [n for n in CONFIG_FIELDS[kind] if n in vars(text) and vars(text)[n] is None]
        changes.extend((name, *finals) for name in names)
    for name, final in changes:
        if kind == GroupKind.HIDDEN:
            _pin_head_dim(text, tx)
        tx.set(text, name, final)


def _by_config(config, prunable: list[Group], model) -> list[tuple[object, list[Group]]]:
    """Groups by the (sub-)config that describes them: the nearest module above
    their first member that holds one of ``config``'s own sub-configs; the text
    config otherwise (and for every group when ``model`` is not given)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    own = {id(c): c for c in _sub_configs(config)}
    found: dict[int, tuple[object, list[Group]]] = {}
    for group in prunable:
        described = text
        if model is not None and group.members:
            path = group.members[0].module
            while path:
                held = getattr(model.get_submodule(path), "config", None)
                if id(held) in own and held is not config:
                    described = held
                    break
                path = path.rpartition(".")[0]
        found.setdefault(id(described), (described, []))[1].append(group)
    return list(found.values())


def _sub_configs(config) -> list:
    """``config`` and the configs it holds (text, vision, encoder, decoder...)."""
    out = [config]
    for value in vars(config).values():
        if hasattr(value, "to_dict") and hasattr(value, "get_text_config"):
            out.extend(_sub_configs(value))
    return out


def attention_sizes(cut: GroupCut) -> tuple[tuple[int, int], tuple[int, int], int]:
    group = cut.group
    old = (group.kv_heads, group.q_per_kv)
    new = (len(cut.kept.get("kv", (0,))), len(cut.kept.get("q", (0,))))
    return old, new, group.head_dim or 1


def final_size(group: Group, cut: GroupCut | None):
    if group.kind == GroupKind.ATTENTION:
        if cut is None:
            return (group.kv_heads, group.q_per_kv)
        return attention_sizes(cut)[1]
    return group.size if cut is None else cut.kept_size(group.levels[0].name)


def _pin_head_dim(config, tx: Transaction) -> None:
    """A config deriving head_dim from hidden_size must keep it when hidden shrinks."""
    heads = _read(config, "num_attention_heads")
    # per-stage lists (Swin-V2's num_heads) derive no head_dim from hidden_size
    if _read(config, "head_dim") in (None, 0) and isinstance(heads, int) and heads:
        tx.set(config, "head_dim", config.hidden_size // heads)


def update_layer_fields(model: nn.Module, old_count: int, kept: list[int], tx: Transaction) -> None:
    """After blocks are removed: the layer count and per-layer lists of the config."""
    config = getattr(model, "config", None)
    if config is None:
        return
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in LAYER_COUNT_FIELDS:
        if getattr(text, name, None) == old_count:
            tx.set(text, name, len(kept))
    for name in PER_LAYER_FIELDS:
        values = getattr(text, name, None)
        if isinstance(values, (list, tuple)) and len(values) == old_count:
            tx.set(text, name, type(values)(values[i] for i in kept))
