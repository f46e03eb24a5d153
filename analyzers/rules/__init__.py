"""The table of coupling rules, one per aten overload (see ``registry``)."""

from . import (
    attention,
    conv,
    elementwise,
    indexing,
    linalg,
    moe,
    norm,
    reduce,
    residual,
    shape,
    slicing,
)
from .context import RuleContext
from .registry import lookup, register, registered_ops

__all__ = ["RuleContext", "lookup", "register", "registered_ops"]
del attention, conv, elementwise, indexing, linalg, moe, norm, reduce, residual, shape, slicing
