"""Capture of chosen submodules, for models whose own forward cannot be
exported (a detector's anchors, proposals, RoI pooling and non-maximum
suppression depend on the data).

The model runs once, eagerly, on the example inputs. Each chosen submodule
(``backbone``, ``rpn.head``, ``roi_heads.box_head``...) records what it
received and returned. :class:`Parts` then calls the chosen submodules in
that order as one module: an input that is the very tensor another chosen
submodule returned is wired to it (the FPN's features into the RPN head,
``box_head`` into ``box_predictor``), every other tensor input becomes an input
of ``Parts`` (the model's code in between computed it), and other values are
kept as they were. An output is returned, and so kept whole, unless only
chosen submodules read it: whatever the code in between reads (the RoI pooling
reads the FPN's features) must keep its shape.

Parameter names inside :class:`Parts` are the model's own, so a plan made on
its analysis applies to the whole model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from surgeon.errors import InputError

__all__ = ["Parts"]


@dataclass(frozen=True)
class _Step:
    name: str
    spec: Any  # pytree spec of (args, kwargs)
    sources: tuple[tuple, ...]  # per leaf: ("input", k) | ("part", step, leaf) | ("value", v)

    def __deepcopy__(self, memo) -> _Step:  # immutable: copies of Parts share it
        return self


class Parts(nn.Module):
    """The chosen submodules of ``model`` as one module; call it with
    ``*parts.inputs``. Holds the model's own submodules (no copies)."""

    def __init__(self, model: nn.Module, names: Sequence[str], args: tuple, kwargs: dict) -> None:
        super().__init__()
        names = _checked(model, names)
        calls, glue_read = _record(model, names, args, kwargs)
        self.model_class = type(model).__name__
        self.names = tuple(names)
        for name in sorted(names, key=lambda n: n.count(".")):
            _attach(self, name, model.get_submodule(name))
        self.training = False
        for holder in self.modules():
            if isinstance(holder, _Holder):
                holder.training = False
        self._build(calls, glue_read)

    def _build(self, calls: list[tuple[str, Any, Any]], glue_read: set[int]) -> None:
        produced: dict[int, tuple[int, int]] = {}  # id(tensor) -> (step, leaf)
        inputs: dict[int, int] = {}
        values: list[torch.Tensor] = []
        steps, consumed = [], set()
        for index, (name, received, returned) in enumerate(calls):
            leaves, spec = pytree.tree_flatten(received)
            sources = []
            for leaf in leaves:
                if isinstance(leaf, torch.Tensor) and id(leaf) in produced:
                    sources.append(("part", *produced[id(leaf)]))
                    consumed.add(produced[id(leaf)])
                elif isinstance(leaf, torch.Tensor):
                    if id(leaf) not in inputs:
                        inputs[id(leaf)] = len(values)
                        values.append(leaf)
                    sources.append(("input", inputs[id(leaf)]))
                else:
                    sources.append(("value", leaf))
            steps.append(_Step(name, spec, tuple(sources)))
            for position, leaf in enumerate(pytree.tree_leaves(returned)):
                if isinstance(leaf, torch.Tensor):
                    produced.setdefault(id(leaf), (index, position))
        self._steps = tuple(steps)
        self._returned = tuple(
            (index, position)
            for index, (_, _, returned) in enumerate(calls)
            for position, leaf in enumerate(pytree.tree_leaves(returned))
            if isinstance(leaf, torch.Tensor)
            and ((index, position) not in consumed or id(leaf) in glue_read)
        )
        self.inputs = tuple(values)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs: list[list[Any]] = []
        for step in self._steps:
            leaves = [
                inputs[s[1]] if s[0] == "input" else outputs[s[1]][s[2]] if s[0] == "part" else s[1]
                for s in step.sources
            ]
            args, kwargs = pytree.tree_unflatten(leaves, step.spec)
            outputs.append(pytree.tree_leaves(self.get_submodule(step.name)(*args, **kwargs)))
        return tuple(outputs[index][position] for index, position in self._returned)

    def rebind(self, model: nn.Module) -> Parts:
        """The same calls on the same inputs, with ``model``'s submodules of
        these names (a cut copy of the model)."""
        other = object.__new__(Parts)
        nn.Module.__init__(other)
        for name in sorted(self.names, key=lambda n: n.count(".")):
            _attach(other, name, model.get_submodule(name))
        other.training = False
        for holder in other.modules():
            if isinstance(holder, _Holder):
                holder.training = False
        other.model_class, other.names = self.model_class, self.names
        other._steps, other._returned, other.inputs = self._steps, self._returned, self.inputs
        return other


class _Holder(nn.Module):
    """A path element between :class:`Parts` and a chosen submodule."""


def _attach(root: nn.Module, name: str, module: nn.Module) -> None:
    *path, last = name.split(".")
    node = root
    for part in path:
        if part not in node._modules:
            node.add_module(part, _Holder())
        node = node._modules[part]
    node.add_module(last, module)


def _checked(model: nn.Module, names: Sequence[str]) -> list[str]:
    if isinstance(names, str) or not names:
        raise InputError("submodules must be a non-empty list of submodule names")
    found = dict(model.named_modules())
    missing = [n for n in names if n not in found or not n]
    if missing:
        raise InputError(
            f"{type(model).__name__} has no submodule {', '.join(map(repr, missing))}; "
            f"its children are {', '.join(n for n, _ in model.named_children())}"
        )
    nested = [(a, b) for a in names for b in names if a != b and b.startswith(a + ".")]
    if nested:
        a, b = nested[0]
        raise InputError(f"submodules '{a}' and '{b}' overlap: name one of them")
    return list(dict.fromkeys(names))


def _record(model: nn.Module, names: list[str], args: tuple, kwargs: dict):
    """(name, (args, kwargs), output) per call, in call order, and the ids of
    the tensors that ops outside the chosen submodules read; refuses a
    submodule called twice or not at all."""
    calls: list[list] = []
    active = [0]
    reads = _Reads(active)
    handles = []

    def before(name):
        def hook(module, hook_args, hook_kwargs):
            active[0] += 1
            calls.append([name, (hook_args, hook_kwargs), None])

        return hook

    def after(name):
        def hook(module, hook_args, hook_kwargs, output):
            active[0] -= 1
            next(c for c in reversed(calls) if c[0] == name)[2] = output

        return hook

    for name in names:
        module = model.get_submodule(name)
        handles.append(module.register_forward_pre_hook(before(name), with_kwargs=True))
        handles.append(module.register_forward_hook(after(name), with_kwargs=True))
    try:
        with torch.no_grad(), reads:
            model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    counts = {n: sum(c[0] == n for c in calls) for n in names}
    twice = [n for n, count in counts.items() if count > 1]
    unused = [n for n, count in counts.items() if count == 0]
    if twice or unused:
        what = f"ran {counts[twice[0]]} times" if twice else "did not run"
        raise InputError(
            f"submodule '{(twice or unused)[0]}' of {type(model).__name__} {what} on these "
            "inputs: name submodules that run exactly once (a parent of a module called per "
            "level, for one)"
        )
    return [tuple(c) for c in calls], reads.read


class _Reads(TorchDispatchMode):
    """Ids of the tensors that ops outside the chosen submodules read."""

    def __init__(self, active: list[int]) -> None:
        super().__init__()
        self.active = active
        self.read: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.active[0]:
            for leaf in pytree.tree_leaves((args, kwargs)):
                if isinstance(leaf, torch.Tensor):
                    self.read.add(id(leaf))
        return func(*args, **kwargs)
