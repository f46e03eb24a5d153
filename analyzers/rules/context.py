"""What a coupling rule sees of one graph node."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx

from ..axes import AxisAlgebra, AxisConflict, Fact, FactKind, Interface
from ..ops import LAYOUT_OPS, PRODUCTS

__all__ = ["Axes", "LAYOUT_OPS", "PassState", "RuleContext", "is_run_time", "size_of"]

Axes = tuple[int, ...]

# sizes known only at run time (the tokens an expert receives after routing) all
# stand as one number far above any width: element-wise ops may meet two of them
# (they are equal when the op runs), and no rule can line one up with a weight axis
_RUN_TIME = 1 << 40


def size_of(size: Any) -> int:
    """An int for a tensor dimension, also when it is data-dependent (unbacked)."""
    if isinstance(size, torch.SymInt):
        from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

        if free_unbacked_symbols(size):
            return _RUN_TIME
    return int(size)


def is_run_time(size: int) -> bool:
    """Whether ``size`` came from :func:`size_of` for a data-dependent dimension."""
    return size >= _RUN_TIME


@dataclass
class PassState:
    """What the coupling pass knows so far, shared by every rule invocation."""

    algebra: AxisAlgebra
    weights: frozenset[str]  # placeholder names of parameters
    inputs: frozenset[str]  # placeholder names of the model's inputs
    param_names: dict[str, str] = field(default_factory=dict)  # placeholder -> parameter
    env: dict[fx.Node, Any] = field(default_factory=dict)  # node -> axes
    domains: dict[fx.Node, Any] = field(default_factory=dict)  # node -> value domain
    constants: dict[fx.Node, torch.Tensor] = field(default_factory=dict)  # known values
    even_splits: list[tuple[str, list[int]]] = field(default_factory=list)  # (where, pieces)


_PASS_VALUES = LAYOUT_OPS | {"aten.mul.Tensor", "aten.div.Tensor", "aten.add.Tensor"}


class RuleContext:
    """Bound to one node: reads its inputs' axes and relates them to its output."""

    def __init__(self, state: PassState, node: fx.Node, module: str) -> None:
        self.algebra = state.algebra
        self.node = node
        self.module = module
        self._state = state
        self.value_domain: Any = None  # set by rules whose output holds indices

    # -- reading the node ----------------------------------------------------------
    def arg(self, index: int, name: str, default: Any = None) -> Any:
        if name in self.node.kwargs:
            return self.node.kwargs[name]
        if index < len(self.node.args):
            return self.node.args[index]
        return default

    def axes(self, value: Any) -> Axes | None:
        """Atoms of a tensor argument (``None`` for non-tensors)."""
        if isinstance(value, fx.Node):
            found = self._state.env.get(value)
            return found if isinstance(found, tuple) else None
        return None

    def shape(self, value: Any) -> tuple[int, ...]:
        val = value.meta.get("val") if isinstance(value, fx.Node) else None
        if not isinstance(val, torch.Tensor):
            raise AssertionError(f"{value} carries no tensor metadata")
        return tuple(size_of(s) for s in val.shape)

    def out_shape(self) -> tuple[int, ...]:
        return self.shape(self.node)

    def out_shapes(self) -> list[tuple[int, ...] | None]:
        val = self.node.meta.get("val")
        return [
            tuple(size_of(s) for s in v.shape) if isinstance(v, torch.Tensor) else None
            for v in (val if isinstance(val, (list, tuple)) else [val])
        ]

    def tensor_args(self) -> list[fx.Node]:
        flat = [*self.node.args, *self.node.kwargs.values()]
        found: list[fx.Node] = []
        for item in flat:
            for sub in item if isinstance(item, (list, tuple)) else [item]:
                if self.axes(sub) is not None:
                    found.append(sub)
        return found

    def domain_of(self, value: Any) -> int | None:
        """The axis whose positions the integer values of ``value`` index, if known."""
        return self._state.domains.get(value) if isinstance(value, fx.Node) else None

    def constant(self, value: Any) -> torch.Tensor | None:
        """The value of a tensor known when the graph was captured (a lifted constant)."""
        return self._state.constants.get(value) if isinstance(value, fx.Node) else None

    def is_weight(self, value: Any) -> bool:
        """True if ``value`` is a parameter seen through layout-only ops."""
        return self._source(value) in self._state.weights

    def producer(self, value: Any) -> str | None:
        """The parameter whose matrix product made ``value`` (through casts,
        reshapes and scalings): a router's weight for softmax/top-k logits."""
        while isinstance(value, fx.Node) and value.op == "call_function":
            target = str(value.target)
            if target in PRODUCTS:
                for arg in value.args[1:3]:
                    name = self._source(arg)
                    if name in self._state.weights:
                        return self._state.param_names.get(name)
                return None
            if target not in _PASS_VALUES:
                return None
            value = value.args[0]
        return None

    def is_model_input(self, value: Any) -> bool:
        """True if ``value`` is one of the model's inputs seen through layout-only ops."""
        return self._source(value) in self._state.inputs

    def _source(self, value: Any) -> str | None:
        while isinstance(value, fx.Node):
            if value.op == "placeholder":
                return value.name
            if value.op != "call_function" or str(value.target) not in LAYOUT_OPS:
                return None
            value = value.args[0]
        return None

    # -- relating axes ---------------------------------------------------------------
    def fresh(self, shape: Sequence[int]) -> Axes:
        return tuple(self.algebra.new(s) for s in shape)

    def like_output(self) -> Axes:
        return self.fresh(self.out_shape())

    def size(self, atom: int) -> int:
        return self.algebra.size(atom)

    def unify(self, a: int, b: int) -> None:
        self.algebra.unify(a, b)

    def unify_all(self, xs: Sequence[int], ys: Sequence[int]) -> None:
        """Unify position by position, skipping size-1 (broadcast) axes. Two
        axes whose structures disagree (positions chunked on one side, padded on
        the other: LED's attention mask against its windowed scores) are frozen,
        not the op's other axes (its heads)."""
        if len(xs) != len(ys):
            raise AssertionError(f"rank mismatch {len(xs)} vs {len(ys)} at {self.node}")
        for x, y in zip(xs, ys, strict=True):
            if self.size(x) != 1 and self.size(y) != 1:
                try:
                    self.unify(x, y)
                except AxisConflict as conflict:
                    for atom in (x, y):
                        self.freeze(atom, f"axes do not line up ({conflict})")

    def broadcast_into(self, xs: Sequence[int], out: Sequence[int]) -> None:
        """Align ``xs`` to the trailing axes of ``out`` as broadcasting does."""
        if len(xs) > len(out):
            raise AssertionError(f"cannot broadcast rank {len(xs)} into {len(out)}")
        self.unify_all(xs, out[len(out) - len(xs) :])

    def fact(
        self,
        atom: int,
        kind: FactKind,
        reason: str,
        value: int | None = None,
        interface: Interface | None = None,
    ) -> None:
        self.algebra.add_fact(atom, Fact(kind, reason, self.module, value, interface))

    def describe(self) -> str:
        where = f" in module '{self.module}'" if self.module else ""
        return f"{self.node.target} (node '{self.node.name}'){where}"

    def even_split(self, pieces: list[int]) -> None:
        """``pieces`` come from a split whose sizes are computed from the total at
        run time (``chunk``, ``split(int)``): they must all keep the same units."""
        self._state.even_splits.append((self.describe(), list(pieces)))

    def freeze(self, atom: int, why: str) -> None:
        self.fact(atom, FactKind.FROZEN, f"{self.describe()}: {why}")
