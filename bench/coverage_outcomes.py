"""How a stage of the coverage sweep ends other than by passing or crashing."""

from __future__ import annotations


class Refused(Exception):
    """A check of the sweep itself found a mismatch (not a library error)."""


class Frozen(Exception):
    """The model has groups of the kind, all frozen by the analysis: refused up
    front with a reason (counts against coverage, unlike n/a)."""


class NotPlain(Exception):
    """A promise of plain loadability not kept: honest (the manifest says so),
    so a refusal, not a mismatch."""


class NotApplicable(Exception):
    """The stage has nothing to act on in this model."""
