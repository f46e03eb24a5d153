"""Pattern layers that carry a head count: einops' ``Rearrange``/``Reduce``
(``Rearrange("b n (h d) -> b h n d", h=8)``).

Such a layer keeps its axis lengths in ``axes_lengths`` and precomputes its
recipe from them, so after a head cut it must be rebuilt with the new count.
Any module with a ``pattern`` string, an ``axes_lengths`` dict and the
``__getstate__``/``__setstate__`` pair einops layers define is handled, without
importing einops.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

from surgeon.errors import RewriteError

from .transaction import Transaction

__all__ = ["update_pattern_layers"]


def update_pattern_layers(
    owners: Iterable[tuple[str, nn.Module]],
    heads: tuple[int, int],
    kv_heads: tuple[int, int],
    head_dim: int,
    tx: Transaction,
) -> None:
    """Rebuild the pattern layers among the children of ``owners`` (the modules
    owning a cut attention group and their parents) whose axis lengths name the
    old head count (``heads`` and ``kv_heads`` are (old, new) pairs)."""
    seen: set[int] = set()
    for owner_name, owner in owners:
        for child_name, child in owner.named_children():
            if id(child) in seen or not _is_pattern_layer(child):
                continue
            seen.add(id(child))
            lengths = _new_lengths(child, heads, kv_heads, head_dim, f"{owner_name}.{child_name}")
            if lengths != child.axes_lengths:
                tx.set(owner, child_name, _rebuilt(child, lengths))


def _is_pattern_layer(module: nn.Module) -> bool:
    return (
        isinstance(getattr(module, "pattern", None), str)
        and isinstance(getattr(module, "axes_lengths", None), dict)
        and hasattr(module, "__setstate__")
        and hasattr(module, "__getstate__")
    )


def _new_lengths(layer, heads, kv_heads, head_dim, where: str) -> dict:
    lengths = dict(layer.axes_lengths)
    for axis, length in layer.axes_lengths.items():
        new = {old: fresh for old, fresh in (kv_heads, heads)}.get(length)
        if new is None or new == length:
            continue
        if length == head_dim and _is_innermost(layer.pattern, axis):
            continue  # the head size, not a head count
        if length == head_dim and not _in_group(layer.pattern, axis):
            raise RewriteError(
                f"pattern layer '{where.lstrip('.')}' ({layer.pattern!r}, {axis}={length}): "
                f"{length} is both the head count and the head size, and the pattern does not "
                f"say which '{axis}' is; keep this attention group whole"
            )
        lengths[axis] = new
    return lengths


def _groups(pattern: str) -> list[list[str]]:
    return [group.split() for group in re.findall(r"\(([^)]*)\)", pattern)]


def _in_group(pattern: str, axis: str) -> bool:
    return any(axis in group for group in _groups(pattern))


def _is_innermost(pattern: str, axis: str) -> bool:
    """``axis`` is the last factor of a composed axis: ``d`` in ``(h d)``."""
    return any(group and group[-1] == axis for group in _groups(pattern))


def _rebuilt(layer: nn.Module, lengths: dict) -> nn.Module:
    state = {**layer.__getstate__(), "axes_lengths": lengths}
    fresh = type(layer).__new__(type(layer))
    fresh.__setstate__(state)
    fresh.train(layer.training)
    return fresh
