"""fx-surgeon: capture a model as an FX graph, find what must be pruned together,
and shrink it.

>>> import surgeon
>>> analysis = surgeon.analyze(model)          # doctest: +SKIP
>>> print(analysis.summary())                   # doctest: +SKIP
"""

from surgeon.analyzers import Analysis, Block, Group, GroupKind, Layout, Level, Member, analyze
from surgeon.checkpoint.persist import load, save
from surgeon.checkpoint.stream import StreamResult, prune_checkpoint
from surgeon.errors import CaptureError, InputError, PlanError, RewriteError, SurgeonError
from surgeon.plan.plan import Plan
from surgeon.plan.planner import PlanOptions, make_plan
from surgeon.prune import PruneResult, prune
from surgeon.rewriters import apply
from surgeon.verify import VerifyReport, verify

__all__ = [
    "Analysis",
    "Block",
    "CaptureError",
    "Group",
    "GroupKind",
    "InputError",
    "Layout",
    "Level",
    "Member",
    "Plan",
    "PlanOptions",
    "PruneResult",
    "PlanError",
    "RewriteError",
    "StreamResult",
    "SurgeonError",
    "VerifyReport",
    "analyze",
    "apply",
    "load",
    "make_plan",
    "prune",
    "prune_checkpoint",
    "save",
    "verify",
]
__version__ = "0.1.0"
