"""Removing whole repeated blocks (decoder layers).

The kept blocks are renumbered (``layer_idx``, which the KV cache is indexed
by) and the config follows: ``num_hidden_layers`` and per-layer lists such as
``layer_types``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from torch import nn

from surgeon.analyzers import Block

from .config_fields import update_layer_fields
from .transaction import Transaction

__all__ = ["remove_blocks", "renumbered"]


def renumbered(removed_blocks: Sequence[str]) -> Callable[[str], str | None]:
    """A dotted name of the original model -> its name once ``removed_blocks``
    are gone (a ModuleList renumbers what follows), or None if it went with them."""
    gone: dict[str, list[int]] = {}
    for name in removed_blocks:
        parent, _, index = name.rpartition(".")
        if index.isdigit():
            gone.setdefault(parent + ".", []).append(int(index))

    def rename(name: str) -> str | None:
        for prefix, indices in gone.items():
            head, dot, rest = name.removeprefix(prefix).partition(".")
            if name.startswith(prefix) and head.isdigit():
                number = int(head)
                if number in indices:
                    return None
                return f"{prefix}{number - sum(i < number for i in indices)}{dot}{rest}"
        return name

    return rename


def remove_blocks(model: nn.Module, blocks: Iterable[Block], tx: Transaction) -> None:
    """Remove ``blocks`` (their ``index`` is the position in their container).

    Innermost containers go first, so the paths of outer blocks are still valid
    when their turn comes; a block inside another removed block needs no work."""
    blocks = list(blocks)
    names = {b.name for b in blocks}
    by_container: dict[str, set[int]] = {}
    for block in blocks:
        if any(block.name.startswith(other + ".") for other in names):
            continue
        by_container.setdefault(block.container, set()).add(block.index)
    for container_name in sorted(by_container, key=lambda n: -n.count(".") - bool(n)):
        container = model.get_submodule(container_name)
        removed = by_container[container_name]
        # positions count None entries (a layer some positions skip), which stay
        entries = list(container._modules.values())
        children = [child for i, child in enumerate(entries) if i not in removed]
        kept = [i for i in range(len(entries)) if i not in removed]
        tx.set(container, "_modules", {str(i): child for i, child in enumerate(children)})
        for new_index, child in enumerate(children):
            for module in child.modules() if child is not None else ():
                if isinstance(getattr(module, "layer_idx", None), int):
                    tx.set(module, "layer_idx", new_index)
        update_layer_fields(model, len(kept) + len(removed), kept, tx)
