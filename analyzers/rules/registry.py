"""The coupling-rule table: one rule per aten overload.

A rule receives a :class:`~surgeon.analyzers.rules.context.RuleContext` for one
graph node and returns the axes of the node's output (a tuple of atoms per
tensor, or a list of such tuples for ops returning several tensors). Rules
relate axes through the context; they never look at parameter names.

What belongs here: every op whose effect on tensor axes is known exactly. An op
without a rule freezes every axis it touches (see ``propagate``); ops tagged
``pointwise`` in ``native_functions.yaml`` use the broadcasting rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["Rule", "register", "lookup", "registered_ops"]

Rule = Callable[..., Any]
# Keyed by the overload's qualified name ("aten.linear.default"), so that ops of
# libraries imported later (``transformers.grouped_mm_fallback``) can be named
# before they exist.
_RULES: dict[str, Rule] = {}


def _names(ops: Iterable[Any]) -> Iterable[str]:
    for op in ops:
        if isinstance(op, torch._ops.OpOverloadPacket):
            yield from (str(getattr(op, name)) for name in op.overloads())
        else:
            yield str(op)


def register(*ops: Any) -> Callable[[Rule], Rule]:
    """Register ``rule`` for each exact overload in ``ops`` (an overload, its
    qualified name, or a packet meaning all of its overloads). Registering an
    overload twice is a programming error."""

    def decorate(rule: Rule) -> Rule:
        for name in _names(ops):
            if name in _RULES:
                raise ValueError(f"a coupling rule for {name} is already registered")
            _RULES[name] = rule
        return rule

    return decorate


_POINTWISE: dict[str, Rule] = {}


def lookup(op: Any) -> Rule | None:
    rule = _RULES.get(str(op))
    if rule is None and isinstance(op, torch._ops.OpOverload) and torch.Tag.pointwise in op.tags:
        return _POINTWISE.get("rule")
    return rule


def register_pointwise(rule: Rule) -> Rule:
    """The rule of every op torch tags ``pointwise`` that has no rule of its own
    (the element-wise room registers broadcasting here)."""
    _POINTWISE["rule"] = rule
    return rule


def registered_ops() -> list[str]:
    return sorted(_RULES)
