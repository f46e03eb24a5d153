"""Removing whole repeated blocks (decoder layers).

The kept blocks are renumbered (``layer_idx``, which the KV cache is indexed
by) and the config follows: ``num_hidden_layers`` and per-layer lists such as
``layer_types``.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from surgeon.analyzers import Block

from .transaction import Transaction

__all__ = ["remove_blocks"]

_LAYER_COUNT_FIELDS = ("num_hidden_layers", "n_layer", "num_layers")
_PER_LAYER_FIELDS = ("layer_types",)


def remove_blocks(model: nn.Module, blocks: Iterable[Block], tx: Transaction) -> None:
    by_container: dict[str, set[int]] = {}
    for block in blocks:
        by_container.setdefault(block.container, set()).add(block.index)
    for container_name, removed in by_container.items():
        container = model.get_submodule(container_name)
        kept = [i for i in range(len(container)) if i not in removed]
        children = [container[i] for i in kept]
        if isinstance(container, nn.Sequential):
            replacement = nn.Sequential(*children)
        else:
            replacement = nn.ModuleList(children)
        replacement.training = container.training  # only the container: children keep theirs
        parent_name, _, attr = container_name.rpartition(".")
        tx.set(model.get_submodule(parent_name), attr, replacement)
        for new_index, block in enumerate(replacement):
            for module in block.modules():
                if isinstance(getattr(module, "layer_idx", None), int):
                    tx.set(module, "layer_idx", new_index)
        _update_config(model, len(container), kept, tx)


def _update_config(model: nn.Module, old_count: int, kept: list[int], tx: Transaction) -> None:
    config = getattr(model, "config", None)
    if config is None:
        return
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in _LAYER_COUNT_FIELDS:
        if getattr(text, name, None) == old_count:
            tx.set(text, name, len(kept))
    for name in _PER_LAYER_FIELDS:
        values = getattr(text, name, None)
        if isinstance(values, (list, tuple)) and len(values) == old_count:
            tx.set(text, name, type(values)(values[i] for i in kept))
