"""Ways torch's capture trips over ordinary model code, each turned aside
while :func:`~surgeon.analyzers.capture.capture` runs and restored after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["idle_conversions", "unvalidated_distributions", "where_as_nonzero"]


@contextlib.contextmanager
def idle_conversions() -> Iterator[None]:
    """A forward may convert its own submodule (SwitchTransformers' router:
    ``self.classifier = self.classifier.to(self.dtype)``). Under export its
    parameters are fake tensors, which ``Module._apply`` cannot swap; a
    conversion that changes no tensor (the dtype and device they already have)
    returns the module as it is instead. One that would change a tensor still
    fails, naming the module."""
    apply = nn.Module._apply

    def _apply(self, fn, recurse=True):
        tensors = [*self.parameters(recurse=recurse), *self.buffers(recurse=recurse)]
        with torch.no_grad():
            if all(fn(tensor) is tensor for tensor in tensors):
                return self
        return apply(self, fn, recurse)

    nn.Module._apply = _apply
    try:
        yield
    finally:
        nn.Module._apply = apply


@contextlib.contextmanager
def where_as_nonzero() -> Iterator[None]:
    """``torch.where(condition)`` as ``condition.nonzero().unbind(1)``, the same
    index tensors. Under ``draft_export`` (torch 2.13) the one-argument ``where``
    leaves its unbacked length unbound (PendingUnbackedSymbolNotFound), which
    stopped every expert loop routing tokens by ``torch.where(expert_mask[e])``
    (LongCat-Flash); ``nonzero`` is captured."""
    where = torch.where

    def nonzero_where(*args, **kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
            return tuple(args[0].nonzero().unbind(1))
        return where(*args, **kwargs)

    torch.where = nonzero_where
    try:
        yield
    finally:
        torch.where = where


@contextlib.contextmanager
def unvalidated_distributions() -> Iterator[None]:
    """``torch.distributions`` check their arguments' values when built (BLT's
    ``Categorical(logits=...)``): a check, not computation, and a branch on
    values export cannot decide. Off while capturing, as it was after."""
    from torch.distributions import Distribution

    before = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(before)
