"""Physical surgery: slicing parameters to a plan and fixing what reads their shapes."""

from . import mha  # registers the nn.MultiheadAttention rewriter
from .apply import apply
from .modules import register_module
from .resolve import GroupCut, ResolvedPlan, resolve

__all__ = ["GroupCut", "ResolvedPlan", "apply", "register_module", "resolve"]
del mha
