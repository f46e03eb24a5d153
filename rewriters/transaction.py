"""All-or-nothing attribute changes: every ``set`` is recorded, and ``rollback``
puts back the old values in reverse order."""

from __future__ import annotations

from typing import Any

__all__ = ["Transaction"]

_MISSING = object()


class Transaction:
    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any]] = []

    def set(self, obj: Any, name: str, value: Any) -> None:
        self._undo.append((obj, name, getattr(obj, name, _MISSING)))
        setattr(obj, name, value)

    def rollback(self) -> None:
        while self._undo:
            obj, name, old = self._undo.pop()
            if old is _MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, old)
