"""Plans for streaming surgery: given (a Plan, its dict or its JSON file), or made
by the planner from weight-only scores read off disk one tensor at a time.

Only criteria that need no calibration data can run without the model in
memory; everything else is refused before any tensor is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from surgeon.analyzers import Analysis
from surgeon.calibrate.criteria import CRITERIA, check_criterion, score_group
from surgeon.checkpoint.shards import TensorEntry, read_tensor
from surgeon.errors import InputError, PlanError, SurgeonError
from surgeon.options import check_fields, option
from surgeon.plan.options import PlanOptions
from surgeon.plan.plan import Plan
from surgeon.plan.planner import make_plan

__all__ = ["DiskParameters", "StreamOptions", "given_plan", "plan_options_for", "scored_plan"]


@dataclass(frozen=True)
class StreamOptions:
    """Scoring without the model in memory: weight-only criteria."""

    criterion: str = option(
        "magnitude",
        "weight-only importance criterion",
        choices=sorted(n for n, c in CRITERIA.items() if not c.needs_calibration),
    )
    seed: int = option(0, "seed of the 'random' criterion", minimum=0)

    def __post_init__(self) -> None:
        check_fields(self)


def given_plan(
    plan: Plan | Mapping[str, Any] | str | Path | None,
    ratio: float | None,
    plan_options: dict[str, Any],
) -> Plan | None:
    """The plan the caller gave, if any; a plan excludes planning options."""
    if plan is None:
        return None
    if ratio is not None or plan_options:
        raise InputError("give either plan=... or ratio/params and plan options, not both")
    return _coerce_plan(plan)


def plan_options_for(
    ratio: float | None, criterion: str, plan_options: dict[str, Any]
) -> PlanOptions:
    """Checked before anything is read: streaming can only use weight-only criteria."""
    options = PlanOptions.from_kwargs(ratio, plan_options)
    check_criterion(criterion)
    explicit_layers = options.layers not in (0, "auto")
    if CRITERIA[criterion].needs_calibration or explicit_layers:
        raise InputError(
            f"streaming surgery scores from the weights alone: criterion '{criterion}'"
            f"{' and layers=...' if explicit_layers else ''} need calibration data; use "
            "magnitude, magnitude-l1 or random, or pass a plan made elsewhere (plan=...)"
        )
    return options


def scored_plan(
    analysis: Analysis,
    weights: DiskParameters,
    options: PlanOptions,
    criterion: str,
    seed: int,
    progress: bool,
) -> tuple[Plan, dict[str, str]]:
    """Scores of every group to cut, from tensors read off disk one at a time, as
    ``surgeon.prune`` scores them in memory; then the planner."""
    generator = torch.Generator().manual_seed(seed)
    groups = [g for g in analysis.prunable if g.kind in options.kinds]
    scores, used = {}, {}
    for group in tqdm(groups, desc="scoring", unit="group", disable=not progress):
        scores[group.id], used[group.id] = score_group(weights, group, criterion, None, generator)
    return make_plan(analysis, scores, options), used


def _coerce_plan(plan: Plan | Mapping[str, Any] | str | Path) -> Plan:
    if isinstance(plan, (str, Path)):
        path = Path(plan)
        if not path.is_file():
            raise InputError(f"plan file '{path}' does not exist")
        try:
            return Plan.from_json(path.read_text())
        except ValueError as error:
            raise PlanError(f"{path}: not a plan ({error})") from error
    if isinstance(plan, Mapping) and "format_version" in plan:
        return Plan.from_dict(plan)
    return Plan.coerce(plan)


class DiskParameters:
    """Stands in for the model when a weight-only criterion asks for a parameter:
    the tensor is read from the checkpoint then, and dropped once scored."""

    def __init__(self, sources: dict, tied: dict[str, str]) -> None:
        self._sources = sources  # name -> TensorEntry or surgeon.checkpoint.converted.StackedSource
        self._names: dict[str, list[str]] = {}
        for alias, first in tied.items():
            self._names.setdefault(first, [first]).append(alias)

    def get_parameter(self, name: str) -> torch.Tensor:
        for candidate in self._names.get(name, [name]):
            source = self._sources.get(candidate)
            if isinstance(source, TensorEntry):
                return read_tensor(source)
            if source is not None:
                return source.read()
        raise SurgeonError(f"the checkpoint has no tensor '{name}' to score")
