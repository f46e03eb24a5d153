"""``prune``: the common case in one call: calibrate, score, plan, cut, compensate, verify."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from surgeon.analyzers import Analysis, analyze
from surgeon.analyzers.dispatched import has_accelerate_hooks, materialized_copy
from surgeon.calibrate.calibration import Statistics, calibrate, token_batches
from surgeon.calibrate.criteria import CRITERIA, check_criterion, score_group
from surgeon.checkpoint.provenance import record_compensation
from surgeon.errors import InputError
from surgeon.plan.costs import count_flops, flop_weights
from surgeon.plan.plan import Plan
from surgeon.plan.planner import PlanOptions, make_plan, planned_depth
from surgeon.rewriters import apply
from surgeon.rewriters.compensate import COMPENSATIONS, compensate_consumers
from surgeon.verify import VerifyReport, verify

__all__ = ["RECOMMENDED", "PruneReport", "PruneResult", "prune"]

# The best recipe measured by bench/quality.py on the trained tiny-llama fixture
# (docs/benchmarks.md, "Pruning quality"): FLAP scores (An et al. 2024), the same
# width in every layer, and the least-squares refit with an intercept of the
# consumer layers. Use as ``prune(model, ratio, calib=..., **RECOMMENDED)``.
RECOMMENDED: dict[str, Any] = {
    "criterion": "flap",
    "allocation": "uniform",
    "compensate": "refit+bias",
    "kinds": ("mlp", "expert_mlp"),
    "layers": 0,  # widths only: best perplexity; the default layers="auto" trades some for speed
}


@dataclass(frozen=True)
class PruneReport:
    params_before: int
    params_after: int
    flops_before: int  # per token: surgeon.plan.costs.count_flops (attention scores excluded)
    flops_after: int
    criterion: dict[str, str]  # group -> criterion actually used (fallbacks show here)
    verification: VerifyReport | None  # of the cut before compensation
    compensation: str | None = None
    depth: str | None = None  # what layers="auto" decided

    def __str__(self) -> str:
        lines = [
            f"parameters: {self.params_before:,} -> {self.params_after:,} "
            f"({self.params_after / self.params_before:.1%})",
            f"FLOPs per token: {self.flops_before:,} -> {self.flops_after:,} "
            f"({self.flops_after / self.flops_before:.1%})",
        ]
        fallbacks = sorted({v for v in self.criterion.values()})
        lines.append(f"criteria used: {', '.join(fallbacks) or 'none'}")
        if self.depth:
            lines.append(self.depth)
        if self.compensation:
            lines.append(f"compensation: {self.compensation}")
        if self.verification is not None:
            lines.append(str(self.verification))
        return "\n".join(lines)


@dataclass(frozen=True)
class PruneResult:
    model: nn.Module
    plan: Plan
    report: PruneReport
    scores: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)


def prune(
    model: nn.Module,
    ratio: float | None = None,
    *,
    criterion: str = "taylor",
    calib: Any = None,
    tokenizer: Any = None,
    samples: int = 64,
    length: int = 256,
    compensate: str | None = None,
    damp: float = 0.01,
    statistics: Statistics | None = None,
    verify_result: bool = True,
    progress: bool = True,
    seed: int = 0,
    layerwise: bool = False,
    device: str | torch.device | None = None,
    **plan_options: Any,
) -> PruneResult:
    """Prune ``model`` by ``ratio`` of its block parameters with ``criterion``.

    ``calib`` is a text file (with ``tokenizer``), a tensor of token ids or a
    list of batches; criteria that read activations or gradients need it.
    ``**RECOMMENDED`` gives the recipe that measured best on a trained model
    (FLAP scores, uniform widths, refit with an intercept). Further keyword
    arguments are :class:`~surgeon.plan.planner.PlanOptions`
    (``kinds``, ``allocation``, ``heads``, ``round_to``, ``ignore``, ``layers``,
    ``params``, ``flops_ratio``...). ``compensate`` corrects the layers that read
    a cut axis on the calibration activations: ``"bias"`` (FLAP's mean shift
    into the bias), ``"refit"`` (least squares, ridge ``damp``) or
    ``"refit+bias"`` (least squares with an intercept); see
    :mod:`surgeon.rewriters.compensate`. ``statistics`` from an earlier
    :func:`~surgeon.calibrate.calibration.calibrate` call is reused
    instead of calibrating again (to compare criteria on one calibration).
    ``layerwise=True`` calibrates one block at a time on ``device`` (default:
    the model's device), for models larger than it (forward-only criteria);
    a model dispatched by accelerate (``device_map``) is calibrated as it is,
    then cut on a plain copy with every weight on the CPU: ``result.model`` is
    that copy (dispatch it again as you like); the dispatched model is unchanged.
    """
    options = PlanOptions.from_kwargs(ratio, plan_options)
    check_criterion(criterion)
    if compensate is not None and compensate not in COMPENSATIONS:
        raise InputError(
            f"compensate must be None or one of {sorted(COMPENSATIONS)}, not {compensate!r}"
        )
    analysis = analyze(model)
    weights = flop_weights(model)
    choice = planned_depth(analysis, options, weights) if options.layers == "auto" else None
    depth = choice.layers if choice else options.layers
    stats = statistics
    if stats is None:
        stats = _calibrate(
            model,
            analysis,
            criterion,
            calib,
            tokenizer,
            samples,
            length,
            options,
            compensate,
            progress,
            layerwise,
            device,
            depth,
        )
    if has_accelerate_hooks(model):  # calibrated where it is; cut on a plain copy
        model = materialized_copy(model)
    generator = torch.Generator().manual_seed(seed)
    scores, used = {}, {}
    for group in analysis.prunable:
        if group.kind in options.kinds:
            scores[group.id], used[group.id] = score_group(
                model, group, criterion, stats, generator, options.allocation != "relative"
            )
    plan = make_plan(analysis, scores, options, stats.block_influence if stats else None, weights)
    pruned = apply(model, plan, analysis=analysis)
    check = verify(model, pruned, plan, analysis=analysis) if verify_result else None
    done = None
    if compensate:
        layers = compensate_consumers(model, pruned, plan, analysis, stats, compensate, damp)
        done = f"{COMPENSATIONS[compensate]} ({len(layers)} layers)"
        record_compensation(pruned, done, check)
    report = PruneReport(
        _count(model),
        _count(pruned),
        count_flops(model),
        count_flops(pruned),
        used,
        check,
        done,
        _depth_note(choice, plan),
    )
    return PruneResult(pruned, plan, report, scores)


def _calibrate(
    model,
    analysis: Analysis,
    criterion,
    calib,
    tokenizer,
    samples,
    length,
    options: PlanOptions,
    compensate,
    progress,
    layerwise=False,
    device=None,
    depth: int = 0,
) -> Statistics | None:
    """Statistics the criterion, the compensation and ``depth`` whole-block
    removals need; ``None`` when nothing needs data. A depth chosen by
    ``layers="auto"`` does not demand data: without it the planner warns and
    cuts widths only."""
    spec = CRITERIA[criterion]
    demanded = spec.needs_calibration or compensate or options.layers not in (0, "auto")
    if not (demanded or depth) or (calib is None and not demanded):
        return None
    if calib is None:
        raise InputError(f"criterion '{criterion}' (or layers/compensation) needs calib=...")
    batches = token_batches(calib, tokenizer, samples, length)
    consumers = (
        {
            m.module
            for g in analysis.prunable
            if g.kind in options.kinds
            for m in g.members
            if m.dim == 1
        }
        if spec.needs_gram or (compensate and compensate.startswith("refit"))
        else ()
    )
    blocks = [b.name for b in analysis.blocks if b.removable] if depth else ()
    return calibrate(
        model,
        batches,
        gradients=spec.needs_gradients,
        gram_for=consumers,
        blocks=blocks,
        progress=progress,
        layerwise=layerwise,
        device=device,
        stack=[b.name for b in analysis.blocks],
    )


def _depth_note(choice, plan: Plan) -> str | None:
    if choice is None:
        return None
    if len(plan.remove_blocks) != choice.layers:
        return f"{choice}; not applied: no block scores without calibration data"
    return str(choice)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
