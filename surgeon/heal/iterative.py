"""Iterative pruning: cut in ``steps`` parts with healing between them
(Minitron's iterative recipe), always distilling from the original model.

Step ``k`` of ``K`` removes what brings the model to ``k/K`` of the target:
with a ``ratio`` R, the ratio of the current model's block parameters
``1 - (1 - R k/K) / (1 - R (k-1)/K)``; with ``params``, ``params/K`` each.
An explicit whole-layer count is removed in the first step, ``layers="auto"``
is decided at every step. The healing tokens are split evenly over the steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from surgeon.errors import InputError
from surgeon.heal.data import token_ids
from surgeon.heal.loop import heal as heal_run
from surgeon.heal.options import HealOptions
from surgeon.heal.result import HealResult

__all__ = ["IterativeResult", "Schedule", "iterative"]


@dataclass(frozen=True)
class Schedule:
    """Healing between pruning steps: ``surgeon.prune(..., heal=Schedule(...))``."""

    data: Any  # text file (with tokenizer), token ids or batches
    tokens: int  # healing tokens over all steps
    steps: int = 2
    tokenizer: Any = None
    eval_data: Any = None
    options: HealOptions | dict[str, Any] | None = None
    teacher: nn.Module | None = None  # default: the model given to prune (unchanged by it)

    def run(self, prune, model: nn.Module, ratio: float | None, **prune_options: Any):
        """``surgeon.prune(model, ratio, heal=self, ...)`` lands here with ``prune``
        itself, so the pruning module needs no import of this one."""
        return _iterate(prune, model, ratio, self, prune_options)

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise InputError(f"heal: steps must be a positive int, not {self.steps!r}")
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 1:
            raise InputError(f"heal: tokens must be a positive int, not {self.tokens!r}")


@dataclass
class IterativeResult:
    """Shaped like :class:`~surgeon.prune.PruneResult` (model, plan, report,
    scores: of the whole run / last step) plus every step's results."""

    model: nn.Module
    plan: Any  # the last step's plan; the saved manifest chains them all
    report: Any  # the last step's report, counted from the original model
    scores: dict[str, torch.Tensor] = field(repr=False)
    cuts: list[Any] = field(repr=False, default_factory=list)
    heals: list[HealResult] = field(repr=False, default_factory=list)

    def __str__(self) -> str:
        lines = [str(self.report)]
        for index, healed in enumerate(self.heals, 1):
            lines.append(f"step {index}/{len(self.heals)}: " + str(healed).replace("\n", "; "))
        return "\n".join(lines)


def iterative(
    model: nn.Module, ratio: float | None = None, *, heal: Schedule, **prune_options: Any
) -> IterativeResult:
    """Prune ``model`` by ``ratio`` (or ``params=``) in ``heal.steps`` cuts of
    :func:`surgeon.prune` (``**prune_options`` passed on), healing for
    ``heal.tokens / heal.steps`` tokens after each. ``model`` is left unchanged
    (it is the teacher unless ``heal.teacher`` is given). The same as
    ``surgeon.prune(model, ratio, heal=heal, ...)``."""
    from surgeon.prune import prune

    return _iterate(prune, model, ratio, heal, prune_options)


def _iterate(prune, model, ratio, schedule: Schedule, prune_options: dict) -> IterativeResult:
    steps, params = schedule.steps, prune_options.pop("params", None)
    if (ratio is None) == (params is None):
        raise InputError("heal: iterative pruning needs exactly one of ratio=... or params=...")
    other = {"flops", "flops_ratio"} & set(prune_options)
    if other:
        raise InputError(f"heal: iterative pruning takes ratio or params, not {sorted(other)}")
    if prune_options.get("statistics") is not None:
        raise InputError("heal: statistics=... cannot serve every cut: each step calibrates anew")
    prune_options.pop("statistics", None)
    options = schedule.options
    if isinstance(options, dict):
        options = HealOptions.build(**options)
    teacher = schedule.teacher if schedule.teacher is not None else model
    data = token_ids(schedule.data, schedule.tokenizer)  # tokenized once for every step
    held_out = (
        None if schedule.eval_data is None else token_ids(schedule.eval_data, schedule.tokenizer)
    )
    layers = prune_options.pop("layers", None)  # None: prune's default
    share = schedule.tokens // steps
    current, cuts, heals = model, [], []
    for step in range(1, steps + 1):
        target = (
            {"params": params // steps}
            if params is not None
            else {"ratio": 1 - (1 - ratio * step / steps) / (1 - ratio * (step - 1) / steps)}
        )
        if layers is not None:
            target["layers"] = layers if layers == "auto" or step == 1 else 0
        cut = prune(current, **target, **prune_options)
        cuts.append(cut)
        healed = heal_run(
            cut.model,
            teacher,
            data,
            tokens=share if step < steps else schedule.tokens - share * (steps - 1),
            eval_data=held_out,
            options=options,
        )
        heals.append(healed)
        current = healed.model
    first, last = cuts[0].report, cuts[-1].report
    report = dataclasses.replace(
        last, params_before=first.params_before, flops_before=first.flops_before
    )
    return IterativeResult(current, cuts[-1].plan, report, cuts[-1].scores, cuts, heals)
