"""Capture, dependency graph, groups (and, later, importance scores)."""

from .analysis import Analysis, AnalyzeOptions, analyze
from .groups import Block, Group, GroupKind, Layout, Level, Member

__all__ = [
    "Analysis",
    "AnalyzeOptions",
    "Block",
    "Group",
    "GroupKind",
    "Layout",
    "Level",
    "Member",
    "analyze",
]
