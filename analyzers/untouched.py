"""Leave the user's model exactly as it was.

Capturing, checking and calibrating all run the user's ``forward``, and a
forward may write on its module: a lazily built position-bias table
(``self.table = ...``), a buffer registered on first call, a flag. Under
``torch.export`` those writes hold fake tensors, and a model left holding one
fails its next forward and cannot be deep-copied. :func:`untouched` records
every module's attributes, parameters, buffers and submodules, and each
parameter's gradient and ``requires_grad``, and puts them all back on exit.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = [
    "StateDiff",
    "copy_keeping_modes",
    "diff",
    "leaves_model_untouched",
    "state_of",
    "untouched",
]

_DICTS = ("_parameters", "_buffers", "_modules")
_Function = TypeVar("_Function", bound=Callable[..., Any])


def leaves_model_untouched(function: _Function) -> _Function:
    """Decorate a function whose first argument is the user's model: it runs
    under :func:`untouched`."""

    @functools.wraps(function)
    def wrapper(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(model, nn.Module):  # the function refuses it with a reason
            return function(model, *args, **kwargs)
        with untouched(model):
            return function(model, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Run the body, then restore ``model``'s module attributes and parameter
    gradients to what they were (in-place changes to tensor values excepted:
    fx-surgeon makes none)."""
    modules = [(module, dict(module.__dict__), _contents(module)) for module in model.modules()]
    params = [(p, p.grad, p.requires_grad) for p in model.parameters()]
    try:
        yield
    finally:
        for module, attributes, dicts in modules:
            for name, saved in dicts.items():
                current = attributes[name]  # the same dict object the module holds
                current.clear()
                current.update(saved)
            module.__dict__.clear()
            module.__dict__.update(attributes)
        for param, grad, requires_grad in params:
            param.grad = grad
            param.requires_grad_(requires_grad)


def _contents(module: nn.Module) -> dict[str, dict]:
    """The entries of the module's own dicts, and of any plain dict it keeps (a
    cache filled in forward, as timm's LeViT keeps its attention biases)."""
    kept = {name: dict(getattr(module, name)) for name in _DICTS}
    for name, value in module.__dict__.items():
        if type(value) is dict and name not in kept:
            kept[name] = dict(value)
    return kept


def copy_keeping_modes(model: nn.Module) -> nn.Module:
    """A deep copy in which every module keeps its training flag: a module that
    rebuilds itself when copied (einops' ``Rearrange`` calls ``__init__`` in
    ``__setstate__``) would come back in training mode."""
    target = copy.deepcopy(model)
    flags = [m.training for m in model.modules()]
    copies = list(target.modules())
    if len(copies) == len(flags):
        for module, training in zip(copies, flags, strict=True):
            module.training = training
    return target


@dataclass(frozen=True)
class StateDiff:
    """What changed on a model: names added, removed or replaced."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def state_of(model: nn.Module) -> dict[str, object]:
    """Everything :func:`untouched` guards, keyed by qualified name: parameters,
    buffers and plain tensor attributes (their identity, shape and dtype),
    each module's training flag, and each parameter's gradient. Compare two
    snapshots with :func:`diff`."""
    state: dict[str, object] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        prefix = f"{path}." if path else ""
        state[f"{prefix}<training>"] = module.training
        for name, value in vars(module).items():
            if isinstance(value, torch.Tensor):
                state[prefix + name] = _identity(value)
        for kind in _DICTS[:2]:
            for name, value in getattr(module, kind).items():
                state[prefix + name] = _identity(value)
                if isinstance(value, nn.Parameter):
                    state[f"{prefix}{name}.grad"] = _identity(value.grad)
    return state


def diff(before: dict[str, object], after: dict[str, object]) -> StateDiff:
    return StateDiff(
        tuple(sorted(set(after) - set(before))),
        tuple(sorted(set(before) - set(after))),
        tuple(sorted(k for k in set(before) & set(after) if before[k] != after[k])),
    )


def _identity(value: torch.Tensor | None) -> object:
    if value is None:
        return None
    return (id(value), type(value).__name__, tuple(value.shape), value.dtype)
