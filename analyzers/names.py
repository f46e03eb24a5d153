"""Parameter names in model order, with tied parameters resolved."""

from __future__ import annotations

from torch import nn

__all__ = ["ParameterNames"]


class ParameterNames:
    """Parameter names in model order; a tied parameter is named by its first
    name (``model.embed_tokens.weight``), the others are its aliases."""

    def __init__(self, model: nn.Module) -> None:
        ties: dict[int, list[str]] = {}
        for name, param in model.named_parameters(remove_duplicate=False):
            ties.setdefault(id(param), []).append(name)
        self.order = {name: i for i, names in enumerate(ties.values()) for name in names}
        self._canonical = {name: names[0] for names in ties.values() for name in names}
        self.aliases = {names[0]: tuple(names[1:]) for names in ties.values() if len(names) > 1}

    def canonical(self, name: str) -> str:
        return self._canonical.get(name, name)

    @property
    def tied(self) -> dict[str, str]:
        """Each second or later name of a tied parameter -> its first name."""
        return {alias: first for first, others in self.aliases.items() for alias in others}
