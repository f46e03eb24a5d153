"""Importance criteria: one registry, each entry a pure function of tensors.

Every criterion scores the indices of some of a group's members (a parameter
and dim); :func:`~.units.unit_scores` sums them per unit, so scores follow the
group's unit structure (a query head, a KV group, an expert). Higher means
more important.

- ``magnitude``: Li et al. 2017 (filter norms). L2 (``magnitude-l1``: L1) norm of
  every member slice.
- ``random``: a baseline; uniform random per unit.
- ``taylor``: LLM-Pruner (Ma et al. 2023), first order, element-wise. Sum of
  ``|w * dL/dw|`` over each member slice, gradients of the calibration loss.
- ``wanda-sp``: structured Wanda as in the FLAP paper (An et al. 2024).
  ``|W[:, j]|_1 * ||X_j||_2`` on consumer inputs.
- ``flap``: FLAP (An et al. 2024). ``Var(X_j) * ||W[:, j]||^2`` on consumer inputs,
  standardised within each group.
- ``activation``: Minitron (Muralidharan et al. 2024). Mean ``|X_j|`` of the unit's
  activation (consumer inputs).
- ``obs``: structured Optimal Brain Surgeon, as ZipLM (Kurtic et al. 2023) and
  SlimGPT (Ling et al. 2024) use it: the output error left by removing input
  column ``j`` of a consumer when the other columns are refit by least squares,
  ``||W[:, j]||^2 / [G^-1]_jj`` with ``G = X^T X / n`` (damped). It scores what
  the ``refit`` compensation cannot recover, so it pairs with it; it needs the
  consumers' Gram matrices.
- ``block-influence`` (depth, in the planner): ShortGPT (Men et al. 2024),
  ``1 - cos(h_in, h_out)`` per block.

"Consumer inputs" are the input features of the ``nn.Linear`` layers that read a
group's axis (``down_proj`` for MLP channels, ``o_proj`` for heads). Groups none
of whose members has such statistics (fused 3-D experts) fall back to taylor when
gradients were collected, else to magnitude, and the fallback is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from surgeon.analyzers.groups import Group
from surgeon.errors import InputError

from .statistics import Statistics
from .units import unit_scores

__all__ = ["CRITERIA", "Criterion", "check_criterion", "score_group"]

MemberScores = dict[tuple[str, int], torch.Tensor]


@dataclass(frozen=True)
class Criterion:
    name: str
    needs_calibration: bool
    needs_gradients: bool
    scores: Callable[[nn.Module, Group, Statistics | None], MemberScores]
    standardise: bool = False
    needs_gram: bool = False  # Gram matrices of the consumer layers' inputs


CRITERIA: dict[str, Criterion] = {}


def _register(criterion: Criterion) -> None:
    if criterion.name in CRITERIA:
        raise ValueError(f"criterion {criterion.name} is already registered")
    CRITERIA[criterion.name] = criterion


def _slices(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """Rows of ``weight`` along ``dim``, flattened: [dim size, rest]."""
    return weight.detach().double().movedim(dim, 0).reshape(weight.shape[dim], -1)


def _magnitude(model, group, stats, p: int = 2) -> MemberScores:
    return {
        (m.param, m.dim): _slices(model.get_parameter(m.param), m.dim).norm(p=p, dim=1)
        for m in group.members
        if not m.buffer
    }


def _taylor(model, group, stats) -> MemberScores:
    out = {}
    for m in group.members:
        grad = stats.gradients.get(m.param) if stats else None
        if grad is not None:
            weight = model.get_parameter(m.param).detach().to("cpu", torch.float64)
            out[(m.param, m.dim)] = _slices(weight * grad, m.dim).abs().sum(1)
    return out


def _consumers(model, group, stats):
    """(member, input stats, weight) for members that are a Linear's inputs."""
    for m in group.members:
        module_name, _, attr = m.param.rpartition(".")
        module = model.get_submodule(module_name) if module_name else model
        feature = stats.inputs.get(module_name) if stats else None
        usable = isinstance(module, nn.Linear) and attr == "weight" and m.dim == 1
        if usable and feature and feature.count:
            yield m, feature, module.weight.detach().to("cpu", torch.float64)


def _wanda_sp(model, group, stats) -> MemberScores:
    return {(m.param, 1): w.abs().sum(0) * f.norm for m, f, w in _consumers(model, group, stats)}


def _flap(model, group, stats) -> MemberScores:
    return {
        (m.param, 1): f.variance * (w * w).sum(0) for m, f, w in _consumers(model, group, stats)
    }


def _activation(model, group, stats) -> MemberScores:
    return {(m.param, 1): f.absolute / f.count for m, f, _ in _consumers(model, group, stats)}


def _obs(model, group, stats, damp: float = 0.01) -> MemberScores:
    out = {}
    for m, f, w in _consumers(model, group, stats):
        if f.gram is None:
            continue
        moments = f.gram / f.count
        ridge = damp * moments.diagonal().mean().clamp_min(1e-12)
        inverse = torch.linalg.inv(moments + ridge * torch.eye(len(moments), dtype=moments.dtype))
        out[(m.param, 1)] = (w * w).sum(0) / inverse.diagonal().clamp_min(1e-30)
    return out


_register(Criterion("magnitude", False, False, _magnitude))
_register(Criterion("magnitude-l1", False, False, lambda m, g, s: _magnitude(m, g, s, p=1)))
_register(Criterion("random", False, False, lambda m, g, s: {}))
_register(Criterion("taylor", True, True, _taylor))
_register(Criterion("wanda-sp", True, False, _wanda_sp))
_register(Criterion("flap", True, False, _flap, standardise=True))
_register(Criterion("activation", True, False, _activation))
_register(Criterion("obs", True, False, _obs, needs_gram=True))


def check_criterion(name: str) -> None:
    """Refuse an unknown criterion name, listing the known ones."""
    if name not in CRITERIA:
        raise InputError(f"unknown criterion '{name}'; known: {', '.join(sorted(CRITERIA))}")


def score_group(
    model: nn.Module,
    group: Group,
    criterion: str,
    stats: Statistics | None,
    generator: torch.Generator | None = None,
    standardise: bool = True,
) -> tuple[torch.Tensor, str]:
    """Per-unit scores of ``group`` and the criterion actually used. With
    ``standardise=False`` a criterion that standardises (FLAP) returns its raw,
    non-negative scores (for the planner's ``relative`` allocation)."""
    check_criterion(criterion)
    if criterion == "random":
        return torch.rand(group.size, generator=generator, dtype=torch.float64), criterion
    used = criterion
    member_scores = CRITERIA[criterion].scores(model, group, stats)
    if not member_scores:  # no member carries this criterion's statistics
        used = "taylor" if stats is not None and stats.gradients else "magnitude"
        member_scores = CRITERIA[used].scores(model, group, stats)
    scores = unit_scores(group, member_scores)
    if standardise and CRITERIA[criterion].standardise and scores.numel() > 1:
        scores = (scores - scores.mean()) / scores.std().clamp_min(1e-12)
    return scores, used
