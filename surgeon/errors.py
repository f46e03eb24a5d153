"""One exception hierarchy: every message names the module, op or parameter at
fault and says what to do about it."""

from __future__ import annotations

__all__ = [
    "CaptureError",
    "InputError",
    "PlanError",
    "RewriteError",
    "SurgeonError",
    "VerificationError",
]


class SurgeonError(Exception):
    """Base class of every error fx-surgeon raises on purpose."""


class CaptureError(SurgeonError):
    """The model could not be captured as a graph (export and fallback failed)."""

    def __init__(self, message: str, *, module: str | None = None, cause: str | None = None):
        super().__init__(message)
        self.module = module
        self.cause = cause


class InputError(SurgeonError, ValueError):
    """An argument given to the public API is unusable (wrong type, shape or value)."""


class PlanError(SurgeonError, ValueError):
    """A pruning plan does not fit the model (unknown group, bad indices, frozen group...)."""


class RewriteError(SurgeonError):
    """A module could not be rewritten to the planned shapes; the model is unchanged."""


class VerificationError(RewriteError):
    """A cut model did not verify against the masked original, so it is not
    returned; ``report`` holds what verify measured. The model is unchanged."""

    def __init__(self, message: str, *, report: object = None):
        super().__init__(message)
        self.report = report
