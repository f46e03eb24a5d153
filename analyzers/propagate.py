"""The coupling pass: walk the captured graph once and apply each node's rule.

Like ``torch.fx.Interpreter`` it visits nodes in order and dispatches on the
opcode, but instead of computing values it computes *axes*: for every tensor,
one atom per dimension in an :class:`~surgeon.analyzers.axes.AxisAlgebra`. What
it leaves behind is the algebra (which axes are one, and what is known about
them) and the atoms of every parameter.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
from torch import fx

from .axes import AxisAlgebra, AxisConflict, Fact, FactKind, Interface
from .capture import Capture
from .ops import VALUE_PRESERVING
from .rules import RuleContext, lookup
from .rules.context import PassState, size_of

__all__ = ["Coupling", "propagate"]


@dataclass
class Coupling:
    """The result of the pass: axis classes, parameter axes and what was not understood."""

    algebra: AxisAlgebra
    params: dict[str, tuple[int, ...]]  # parameters and buffers
    shapes: dict[str, tuple[int, ...]]
    buffers: set[str] = field(default_factory=set)
    even_splits: list[tuple[str, list[int]]] = field(default_factory=list)
    # (leaf index, label, shape) of the outputs whose axes are pinned: no cut changes them
    pinned_outputs: list[tuple[int, str, tuple[int, ...]]] = field(default_factory=list)
    unknown_ops: dict[str, list[str]] = field(default_factory=dict)  # op -> nodes
    # (module, axes) of every op's output: which modules a group's axes pass through,
    # parameter-free ones too (a LayerNorm without weight reads its width)
    touches: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)


def propagate(capture: Capture) -> Coupling:
    return _Propagator(capture).run()


class _Propagator:
    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.algebra = AxisAlgebra()
        self.state = PassState(
            self.algebra,
            frozenset(capture.params),
            frozenset(capture.user_inputs),
            param_names=dict(capture.params),
        )
        self.env = self.state.env
        self.domains = self.state.domains
        self.constants = self.state.constants
        self.coupling = Coupling(self.algebra, {}, {})

    def run(self) -> Coupling:
        for node in self.capture.graph.nodes:
            self.env[node] = getattr(self, node.op)(node)
        self.coupling.even_splits = self.state.even_splits
        return self.coupling

    # -- one method per opcode, as in fx.Interpreter ---------------------------------
    def placeholder(self, node: fx.Node):
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            return None
        axes = tuple(self.algebra.new(size_of(s)) for s in val.shape)
        if node.name in self.capture.constants:
            self.constants[node] = self.capture.constants[node.name]
        name = self.capture.params.get(node.name) or self.capture.buffers.get(node.name)
        if name is not None and node.users:  # a tied weight's second name goes unused
            self.coupling.params[name] = axes
            self.coupling.shapes[name] = tuple(size_of(s) for s in val.shape)
            if node.name in self.capture.buffers:
                self.coupling.buffers.add(name)
        elif node.name in self.capture.user_inputs:
            label = self.capture.user_inputs[node.name]
            for atom in axes:
                self._pin(atom, f"axis of the model input '{label}'", Interface.INPUT)
        elif node.name in self.capture.attributes:
            self._freeze_attribute(self.capture.attributes[node.name], axes)
        return axes

    def _freeze_attribute(self, attribute: str, axes: tuple[int, ...]) -> None:
        """A plain tensor attribute (a table an earlier forward cached on its
        module) is neither a parameter nor a buffer, so a cut cannot slice it:
        every axis it has stays whole."""
        module, _, name = attribute.rpartition(".")
        reason = (
            f"tensor attribute '{attribute}' is not a parameter or buffer, so a cut cannot "
            f"slice it: register it with register_buffer('{name}', ..., persistent=False) "
            "or rebuild it in forward"
        )
        for atom in axes:
            if self.algebra.size(atom) != 1:
                self.algebra.add_fact(atom, Fact(FactKind.FROZEN, reason, module))

    def get_attr(self, node: fx.Node):
        value = getattr(self.capture.owner, str(node.target), None)
        if not isinstance(value, torch.Tensor):
            return None
        self.constants[node] = value
        return tuple(self.algebra.new(size_of(s)) for s in value.shape)

    def call_function(self, node: fx.Node):
        if node.target is operator.getitem:
            return self._getitem(node)
        module = self.capture.module_of(node)
        ctx = RuleContext(self.state, node, module)
        rule = lookup(node.target)
        if rule is None:
            self.coupling.unknown_ops.setdefault(str(node.target), []).append(node.name)
            return self._freeze_node(ctx, "no coupling rule for this op, so its axes are frozen")
        try:
            result = rule(ctx)
        except AxisConflict as conflict:
            return self._freeze_node(ctx, f"axes do not line up ({conflict})")
        except Exception:
            if not _run_time_sizes(node):
                raise
            return self._freeze_node(ctx, "its sizes are known only at run time (data-dependent)")
        if module:
            for axes in result if isinstance(result, list) else [result]:
                if isinstance(axes, tuple):
                    self.coupling.touches.append((module, axes))
        if ctx.value_domain is not None:
            self.domains[node] = ctx.value_domain
        if str(node.target) in VALUE_PRESERVING and node.args and node.args[0] in self.constants:
            self.constants[node] = self.constants[node.args[0]]
        return list(result) if isinstance(result, list) else result

    def call_module(self, node: fx.Node):
        raise AssertionError(f"unexpected call_module node {node.format_node()}")

    call_method = call_module

    def output(self, node: fx.Node):
        """Outputs are interfaces and keep their axes. When a model returns
        logits, only they (and a loss) are pinned: hidden states returned beside
        them (T5's encoder output) describe the model, they do not bound it."""
        leaves = torch.utils._pytree.tree_leaves(node.args)
        labels = self.capture.output_labels
        if len(labels) != len(leaves):
            labels = ["output"] * len(leaves)
        primary = {"logits", "loss"}
        keep = [label.split(".")[0] in primary for label in labels]
        if not any(keep):
            keep = [True] * len(leaves)
        for index, (leaf, label, pinned) in enumerate(zip(leaves, labels, keep, strict=True)):
            axes = self.env.get(leaf) if isinstance(leaf, fx.Node) else None
            if pinned and isinstance(axes, tuple):
                for atom in axes:
                    self._pin(atom, f"axis of the model output '{label}'", Interface.OUTPUT)
                shape = tuple(self.algebra.size(atom) for atom in axes)
                self.coupling.pinned_outputs.append((index, label, shape))
        return None

    # -- helpers ------------------------------------------------------------------
    def _getitem(self, node: fx.Node):
        source, index = node.args
        value = self.env.get(source)
        domain = self.domains.get(source)
        if isinstance(domain, list) and index < len(domain) and domain[index] is not None:
            self.domains[node] = domain[index]
        return value[index] if isinstance(value, list) else None

    def _pin(self, atom: int, reason: str, interface: Interface) -> None:
        if self.algebra.size(atom) != 1:
            self.algebra.add_fact(atom, Fact(FactKind.PINNED, reason, interface=interface))

    def _freeze_node(self, ctx: RuleContext, why: str):
        for arg in ctx.tensor_args():
            for atom in ctx.axes(arg):
                if self.algebra.size(atom) != 1:
                    ctx.freeze(atom, why)
        outputs = [ctx.fresh(s) if s is not None else None for s in ctx.out_shapes()]
        for axes in outputs:
            for atom in axes or ():
                if self.algebra.size(atom) != 1:
                    ctx.freeze(atom, why)
        val = ctx.node.meta.get("val")
        return outputs if isinstance(val, (list, tuple)) else outputs[0]


def _run_time_sizes(node: fx.Node) -> bool:
    """Whether ``node`` or its arguments have sizes that depend on the data (a
    token count per expert), which no rule can relate to a width."""
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    values = [node.meta.get("val")]
    values += [a.meta.get("val") for a in node.all_input_nodes]
    for value in torch.utils._pytree.tree_leaves(values):
        if isinstance(value, torch.Tensor):
            if any(free_unbacked_symbols(s) for s in value.shape if isinstance(s, torch.SymInt)):
                return True
        elif isinstance(value, torch.SymInt) and free_unbacked_symbols(value):
            return True
    return False
