"""From unit scores to a plan that hits a parameter target.

The budget is a fraction (``ratio``) or a count (``params``) of the
*block parameters*: those of every attention, MLP, expert and conv-channel
group, frozen ones too, and of a hidden size only where it is cut exactly
(:func:`~surgeon.plan.costs.covered`); or a fraction
(``flops_ratio``) or a count (``flops``) of the *block FLOPs per token* of
those parameters, as :class:`~surgeon.prune.PruneReport` counts them
(:func:`flop_weights`). Only groups of the chosen ``kinds`` are cut.
Allocation:

* ``uniform``: the same fraction of units in every cut group, so one HF config
  still describes the model;
* ``global``: units ranked by score per parameter across all cut groups, so
  layers that matter keep more;
* ``adaptive``: ``global`` on scores standardised within each group (FLAP);
* ``relative``: ``global`` on ``log(score)`` minus its mean within each group:
  a unit is ranked by how many times it is below or above its group's
  geometric-mean unit, so allocation follows each layer's spread of scores
  and not their scale (needs non-negative scores: ``prune`` passes FLAP's
  unstandardised ones).

``layers`` removes that many whole blocks (lowest block influence, ShortGPT)
and counts toward the target: widths are cut in the other blocks for the rest.
The default, ``layers="auto"``, removes the fewest blocks for which a
generative model's estimated decode speedup stays at least 0.9 of its
parameter reduction, at most half the target (:mod:`surgeon.plan.depth`): none at
20% on Llama-3-8B, 8 of 32 at 50%. It needs block scores; without them it
warns and cuts widths only. ``layers=0`` always cuts widths only.

Attention groups are cut by whole KV groups (``heads="kv"``) or by the same
queries inside every KV group (``heads="q"``).

Kept channel counts (MLP, expert MLP, hidden, conv channels) are rounded up to
multiples of ``round_to``; heads and experts are whole units already. The
default, ``round_to=None``, keeps the power-of-two alignment the original width
had, up to 64, and no coarser than 1/64 of the width (:func:`channel_step`):
on an H100, Llama-3-8B MLP widths that are multiples of 8 to 256 ran as fast as
their FLOPs predict, while unaligned widths made prefill 3.4x slower than the
dense model (docs/benchmarks.md, "GPU speed").
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch

from surgeon.analyzers import Analysis, Group, GroupKind
from surgeon.calibrate.units import level_digits
from surgeon.errors import InputError
from surgeon.plan.allocation import (
    Candidate,
    channel_step,
    global_counts,
    hidden_size,
    keep_comparisons,
    kept_units,
    loadable_heads,
    uniform_counts,
)
from surgeon.plan.costs import block_flops, block_parameters, count_flops, covered, flop_weights
from surgeon.plan.depth import DepthChoice, choose_depth
from surgeon.plan.options import PlanOptions
from surgeon.plan.plan import Plan

__all__ = [
    "PlanOptions",
    "cut_groups",
    "block_flops",
    "block_parameters",
    "channel_step",
    "count_flops",
    "flop_weights",
    "make_plan",
    "planned_depth",
]


def make_plan(
    analysis: Analysis,
    scores: Mapping[str, torch.Tensor],
    options: PlanOptions,
    block_scores: Mapping[str, float] | None = None,
    flops: Mapping[str, float] | None = None,
) -> Plan:
    """A plan removing the lowest-scored units within the budget. ``flops``
    (:func:`flop_weights` of the model) is needed for FLOP targets."""
    by_flops = options.flops is not None or options.flops_ratio is not None
    if by_flops and flops is None:
        raise InputError("planner: FLOP targets need flops=flop_weights(model)")
    weights = flops if by_flops else None
    removed = _blocks_to_remove(analysis, options, block_scores, weights)
    inside = tuple(f"{block}." for block in removed)
    candidates = [
        _candidate(g, scores[g.id], options, weights)
        for g in cut_groups(analysis, options)
        if not any(m.startswith(inside) for m in g.modules)
    ]
    taken = covered(analysis, weights, inside) if inside else 0.0  # by the removed blocks
    budget = max(0.0, _budget(analysis, options, weights) - taken)
    if options.allocation == "uniform" or options.hf_loadable:
        counts = uniform_counts(candidates, budget, options)
        if options.hf_loadable:
            counts = loadable_heads(candidates, counts, hidden_size(analysis))
    else:
        counts = global_counts(candidates, budget, options)
    counts = keep_comparisons(analysis, candidates, counts, options)
    keep = {
        c.group.id: kept_units(c, counts[c.group.id])
        for c in candidates
        if counts[c.group.id] < c.size
    }
    return Plan.for_analysis(analysis, keep, removed)


def cut_groups(analysis: Analysis, options: PlanOptions) -> list[Group]:
    """Groups of the chosen kinds, less ignored ones and those with a level the
    code keeps whole (a size written beside a -1: ``Group.whole_levels``), whose
    flat units the planner cannot cut without cutting that level."""
    return [
        g
        for g in analysis.prunable
        if (g.kind in options.kinds or (options.exact_streams and _exact_stream(g)))
        and not (g.whole_levels and g.kind != GroupKind.ATTENTION)
        and not any(g.id == i or any(m.startswith(i) for m in g.modules) for i in options.ignore)
    ]


def _exact_stream(group: Group) -> bool:
    """A residual stream whose cut equals masking it (BatchNorm CNNs: no norm
    computes statistics over its channels)."""
    return group.kind == GroupKind.HIDDEN and group.mask_equivalent


def _budget(analysis: Analysis, options: PlanOptions, weights) -> float:
    for count in (options.params, options.flops):
        if count is not None:
            return float(count)
    if options.flops_ratio is not None:
        return options.flops_ratio * block_flops(analysis, weights)
    return (options.ratio or 0.0) * block_parameters(analysis)


def _unit_cost(group: Group, level: str | None, weights) -> float:
    """Parameters (or, with ``weights``, FLOPs per token) one unit of ``level``
    removes: members that do not index ``level`` (k/v rows when one query per
    KV group goes) lose nothing."""
    size = group.size if level is None else next(v.size for v in group.levels if v.name == level)
    costs: dict[str, float] = {}  # by parameter: one counted once, like params_covered
    for m in group.members:
        if m.buffer or (level is not None and level not in level_digits(m.layout)):
            continue
        weight = 1.0 if weights is None else weights.get(m.param, 0.0)
        costs.setdefault(m.param, m.numel * _indexed_share(m) / size * weight)
    return sum(costs.values())


def _indexed_share(member) -> float:
    """The share of the member's dim that the group's units index: a DenseNet
    layer's input columns are a concatenation, of which one group owns one
    segment; the other segments are not removed with its units."""
    layout = member.layout
    if layout.kind == "unit":
        return 1.0
    fixed = len(layout.indices({level: () for level in layout.levels()}))
    return 1.0 - fixed / layout.size


def _candidate(group: Group, scores: torch.Tensor, options: PlanOptions, weights) -> Candidate:
    if len(group.levels) < 2:
        return Candidate(group, None, scores.double(), _unit_cost(group, None, weights))
    if group.kind != GroupKind.ATTENTION:
        # a grouped convolution's channels (groups x per group): a cut must keep a
        # full grid, so the finest level is cut alike in every group
        sizes = [level.size for level in group.levels]
        index = max(range(len(sizes)), key=lambda i: (sizes[i], i))
        grid = scores.double().view(*sizes)
        others = [i for i in range(len(sizes)) if i != index]
        level = group.levels[index].name
        return Candidate(group, level, grid.sum(others), _unit_cost(group, level, weights))
    grid = scores.double().view(group.kv_heads, group.q_per_kv)
    if options.heads == "kv":
        return Candidate(group, "kv", grid.sum(1), _unit_cost(group, "kv", weights))
    return Candidate(group, "q", grid.sum(0), _unit_cost(group, "q", weights))


def planned_depth(
    analysis: Analysis, options: PlanOptions, flops: Mapping[str, float] | None = None
) -> DepthChoice:
    """What ``layers="auto"`` decides for this model and target (``flops``, as
    for :func:`make_plan`, for FLOP targets)."""
    by_flops = options.flops is not None or options.flops_ratio is not None
    weights = flops if by_flops else None
    if by_flops and weights is None:
        raise InputError("planner: FLOP targets need flops=flop_weights(model)")
    removed = _budget(analysis, options, weights)
    if weights is not None:  # the FLOP target in parameters, in proportion
        removed *= block_parameters(analysis) / max(block_flops(analysis, weights), 1.0)
    return choose_depth(analysis, removed, options.kinds, options.block_overhead)


def _blocks_to_remove(
    analysis: Analysis, options: PlanOptions, block_scores, weights
) -> tuple[str, ...]:
    count = options.layers
    if count == "auto":
        choice = planned_depth(analysis, options, weights)
        count = choice.layers
        if count and not block_scores:
            warnings.warn(
                f"{choice}, but no block scores were given, so only widths are cut. "
                "Calibrate block influence (surgeon.prune with calib=...) to remove them, "
                "or pass layers=0 to cut widths only on purpose.",
                UserWarning,
                stacklevel=3,
            )
            return ()
    if not count:
        return ()
    if not block_scores:
        raise InputError("removing layers needs block scores (calibrate with block influence)")
    removable = [b.name for b in analysis.blocks if b.removable]
    ranked = sorted(removable, key=lambda name: block_scores.get(name, float("inf")))
    return tuple(ranked[:count])
