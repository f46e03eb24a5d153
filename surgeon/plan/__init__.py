"""Plan: decide what to cut. ``Plan`` (plain data, JSON), the planner that fills one
from scores under a budget, the allocations of that budget, the depth choice and
the cost model all of them count with."""

from surgeon.plan.plan import Plan

__all__ = ["Plan"]
