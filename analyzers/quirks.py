"""Ways torch's capture trips over ordinary model code, each turned aside
while :func:`~surgeon.analyzers.capture.capture` runs and restored after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = [
    "dense_unit_axes",
    "formatted_scalars",
    "idle_conversions",
    "unvalidated_distributions",
    "where_as_nonzero",
]


@contextlib.contextmanager
def _replaced(owner: object, name: str, value: object) -> Iterator[None]:
    """``owner.name`` is ``value`` inside the block, and what it was after."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


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

    with _replaced(nn.Module, "_apply", _apply):
        yield


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

    with _replaced(torch, "where", nonzero_where):
        yield


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


@contextlib.contextmanager
def dense_unit_axes() -> Iterator[None]:
    """Under ``draft_export`` an op with a data-dependent output (an expert's
    ``hidden[None, token_idx]`` when one token is routed to it) gets a fake
    tensor shaped from the real output, which torch 2.13 refuses when an axis of
    size 1 carries an arbitrary stride ((1, 1, 16) strided (16, 1, 1)), though
    such a tensor is contiguous (SwitchTransformers' experts). A contiguous
    output is passed on with the strides torch expects."""
    from torch._subclasses import fake_tensor

    infer = getattr(fake_tensor, "_infer_fake_from_real_tensor", None)
    if infer is None:  # another torch: nothing to mend
        yield
        return

    def infer_contiguous(mode, op, real_out):
        if real_out.storage_offset() == 0 and real_out.is_contiguous():
            real_out = real_out.new_empty(real_out.shape)
        return infer(mode, op, real_out)

    with _replaced(fake_tensor, "_infer_fake_from_real_tensor", infer_contiguous):
        yield


@contextlib.contextmanager
def formatted_scalars() -> Iterator[None]:
    """A one-element integer tensor formatted into a string formats its value
    (``f"expert_{i}"`` picking a submodule by name: SwitchTransformers'
    experts). torch formats a fake one as its repr, so under ``draft_export``
    (which follows the example inputs' values) the value is read and
    specialised on, like any branch."""
    original = torch.Tensor.__format__

    def format_value(self, format_spec):
        if self.numel() == 1 and not self.is_meta and not self.is_floating_point():
            return int(self.item()).__format__(format_spec)
        return original(self, format_spec)

    with _replaced(torch.Tensor, "__format__", format_value):
        yield
