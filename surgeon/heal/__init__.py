"""Healing: recover a pruned model by distillation from the original.

``surgeon.heal(student, teacher, data, tokens=...)`` trains the pruned model
to match the original's next-token distribution (:mod:`surgeon.heal.loop`);
``surgeon.heal.iterative`` prunes in steps with healing between them. The
package itself is callable, so ``surgeon.heal(...)`` and
``surgeon.heal.HealOptions`` both work.
"""

from __future__ import annotations

import sys
import types

from surgeon.heal.iterative import Schedule, iterative
from surgeon.heal.loop import heal
from surgeon.heal.options import HealOptions
from surgeon.heal.result import HealResult

__all__ = ["HealOptions", "HealResult", "Schedule", "heal", "iterative"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs) -> HealResult:
        return heal(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
