"""Phase lines: one line on stderr as each long step starts, so none is silent."""

from __future__ import annotations

import sys

__all__ = ["phase"]


def phase(text: str, enabled: bool = True) -> None:
    """Print ``surgeon: <text> ...`` on stderr (nothing when ``enabled`` is false)."""
    if enabled and text:
        print(f"surgeon: {text} ...", file=sys.stderr, flush=True)
