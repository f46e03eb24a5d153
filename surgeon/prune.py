"""``prune``: the common case in one call: calibrate, score, plan, cut, compensate, verify."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from surgeon.analyzers import Analysis, analyze
from surgeon.analyzers.dispatched import has_accelerate_hooks, materialized_copy
from surgeon.analyzers.untouched import leaves_model_untouched
from surgeon.calibrate.calibration import Statistics, calibrate, check_loss, token_batches
from surgeon.calibrate.criteria import CRITERIA, score_group
from surgeon.calibrate.examples import calibrate_examples, example_batches, reads_token_ids
from surgeon.calibrate.options import CalibrationOptions
from surgeon.checkpoint.config_file import describes_itself
from surgeon.checkpoint.provenance import record_compensation
from surgeon.errors import InputError, VerificationError
from surgeon.plan.costs import block_flops, block_parameters, count_flops, flop_weights
from surgeon.plan.options import PlanOptions
from surgeon.plan.plan import Plan
from surgeon.plan.planner import cut_groups, make_plan, planned_depth
from surgeon.progress import phase
from surgeon.rewriters import apply
from surgeon.rewriters.compensate import COMPENSATIONS, compensate_consumers
from surgeon.rewriters.options import CutOptions
from surgeon.verify import VerifyReport, verify

__all__ = ["OPTION_CLASSES", "RECOMMENDED", "PruneReport", "PruneResult", "prune", "split_options"]

# The options ``prune`` takes as keyword arguments, by pipeline stage. Their
# defaults are the best recipe bench/quality.py measured on the trained
# tiny-llama (docs/benchmarks.md, "Pruning quality"): FLAP scores (An et al.
# 2024), widths spread by each layer's relative scores, the least-squares refit
# with an intercept of the consumer layers, MLP widths only, no whole layers.
OPTION_CLASSES = (CalibrationOptions, PlanOptions, CutOptions)

# Kept for code written against earlier releases: the recipe is now the default.
RECOMMENDED: dict[str, Any] = {}


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
    target: str | None = None  # what was asked, e.g. "ratio=0.2 of block parameters"
    block_params: tuple[int, int] | None = None  # block parameters before, after
    block_flops: tuple[float, float] | None = None  # their FLOPs per token before, after
    removed_blocks: tuple[str, ...] = ()
    plain_loadable: bool | None = None  # saved, plain from_pretrained loads it (None: no config)

    def __str__(self) -> str:
        lines = []
        if self.target and self.block_params:
            (p0, p1), (f0, f1) = self.block_params, self.block_flops or (1.0, 1.0)
            flops = f", {1 - f1 / f0:.1%} of their FLOPs per token" if f0 else ""
            lines.append(
                f"target: {self.target}; achieved: {1 - p1 / max(p0, 1):.1%} of block "
                f"parameters{flops}"
            )
        lines += [
            f"parameters: {self.params_before:,} -> {self.params_after:,} "
            f"({self.params_after / self.params_before:.1%})",
            f"FLOPs per token: {self.flops_before:,} -> {self.flops_after:,} "
            f"({self.flops_after / max(self.flops_before, 1):.1%})",
        ]
        used = sorted(set(self.criterion.values()))
        lines.append(f"criteria used: {', '.join(used) or 'none'} ({len(self.criterion)} groups)")
        if self.removed_blocks:
            lines.append(f"whole blocks removed: {', '.join(self.removed_blocks)}")
        if self.depth:
            lines.append(self.depth)
        if self.verification is not None:
            checked = str(self.verification)
            if self.compensation:
                head, _, rest = checked.partition("\n")
                checked = f"{head}; checked: the cut before compensation\n{rest}".rstrip()
            lines.append(checked)
        if self.compensation:
            lines.append(
                f"compensation: {self.compensation}; the compensated weights differ from the "
                "masked original by design and are not what verify checked"
            )
        if self.plain_loadable is not None:
            lines.append(_LOADING[self.plain_loadable])
        return "\n".join(lines)


_LOADING = {
    True: "saved, it loads with plain from_pretrained (its config describes every layer)",
    False: "saved, plain from_pretrained refuses it (widths differ per layer, or the config's "
    "validators refuse them; its config.json says so): reload it with surgeon.load",
}


@dataclass(frozen=True)
class PruneResult:
    model: nn.Module
    plan: Plan
    report: PruneReport
    scores: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)


def split_options(ratio: float | None, options: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Keyword options routed to the stage that declares them (calibration,
    plan, cut); a name no stage declares is refused, listing all of them."""
    by_class: dict[type, dict[str, Any]] = {cls: {} for cls in OPTION_CLASSES}
    owner = {f: cls for cls in OPTION_CLASSES for f in cls.__dataclass_fields__}
    unknown = sorted(set(options) - set(owner))
    if unknown:
        raise InputError(
            f"unknown option(s) for prune: {', '.join(unknown)}; known: {', '.join(sorted(owner))}"
        )
    for name, value in options.items():
        by_class[owner[name]][name] = value
    calibration = CalibrationOptions(**by_class[CalibrationOptions])
    plan = PlanOptions(ratio=ratio, **by_class[PlanOptions])
    return calibration, plan, CutOptions(**by_class[CutOptions])


@leaves_model_untouched
def prune(
    model: nn.Module,
    ratio: float | None = None,
    *,
    calib: Any = None,
    tokenizer: Any = None,
    inputs: Any = None,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    submodules: Sequence[str] = (),
    statistics: Statistics | None = None,
    progress: bool = True,
    heal: Any = None,
    **options: Any,
) -> PruneResult:
    """Prune ``model`` by ``ratio`` of its block parameters.

    ``calib`` is a text file (with ``tokenizer``), a tensor of token ids or a
    list of batches; the default criterion (FLAP) reads activations, so it
    needs one (``criterion="magnitude"`` needs none). ``inputs`` are example
    inputs for a model that is not a transformers model (as for
    :func:`~surgeon.analyze`); such a model (a torchvision CNN, any
    ``nn.Module``) is calibrated on ``calib`` batches of ``(inputs, target)``
    as a ``DataLoader`` yields them, or on ``inputs`` alone, and
    ``criterion="taylor"`` back-propagates ``loss_fn(output, target)``
    (``loss_fn(output)`` without a target). ``submodules`` names the parts
    to capture and cut when the model's own forward does not export (a
    detector: ``["backbone", "rpn.head", "roi_heads.box_head",
    "roi_heads.box_predictor"]``); they are verified on what they received
    from the model (:func:`~surgeon.analyze`). ``statistics`` from an earlier
    :func:`~surgeon.calibrate.calibration.calibrate` call is reused instead of
    calibrating again. Every other keyword is an option of one stage, with the
    best measured recipe as its default:
    :class:`~surgeon.calibrate.options.CalibrationOptions` (``criterion``,
    ``samples``, ``length``, ``layerwise``, ``device``, ``seed``),
    :class:`~surgeon.plan.options.PlanOptions` (``params``, ``flops_ratio``,
    ``kinds``, ``allocation``, ``heads``, ``round_to``, ``ignore``, ``layers``,
    ``hf_loadable``...) and :class:`~surgeon.rewriters.options.CutOptions`
    (``compensate``, ``damp``, ``verify``). ``layers="auto"`` trades
    perplexity for decode speed by removing whole blocks.

    A model dispatched by accelerate (``device_map``) is calibrated as it is,
    then cut on a plain copy with every weight on the CPU: ``result.model`` is
    that copy; the dispatched model is unchanged.

    ``model`` itself is never changed. A cut that does not verify against the
    masked original raises :class:`~surgeon.errors.VerificationError` (with
    the report); a check too weak to tell a right cut from a wrong one
    (``report.verification.weak``) warns and says so in the report.

    ``heal=surgeon.heal.Schedule(data, tokens, steps=K)`` prunes in ``K`` cuts
    with distillation from ``model`` between them (:mod:`surgeon.heal.iterative`).

    >>> result = surgeon.prune(model, 0.2, calib="calib.txt", tokenizer=tok)  # doctest: +SKIP
    >>> print(result.report)                                                  # doctest: +SKIP
    """
    if heal is not None:  # the schedule calls back into prune for each cut
        kwargs = {"inputs": inputs, "loss_fn": loss_fn, "submodules": submodules}
        kwargs |= {"statistics": statistics, "progress": progress}
        return heal.run(prune, model, ratio, calib=calib, tokenizer=tokenizer, **kwargs, **options)
    scoring, planning, cut = split_options(ratio, options)
    if statistics is None and loss_fn is None and reads_token_ids(model):
        check_loss(model, scoring.criterion)  # before any work

    def step(text: str) -> None:
        phase(text, progress)

    step("analysing the model")
    analysis = analyze(model, inputs, submodules=tuple(submodules))
    weights = flop_weights(model)
    choice = planned_depth(analysis, planning, weights) if planning.layers == "auto" else None
    depth = choice.layers if choice else planning.layers
    stats = statistics
    if stats is None:
        stats = _calibrate(
            model,
            analysis,
            scoring,
            calib,
            tokenizer,
            planning,
            cut,
            progress,
            depth,
            inputs,
            loss_fn,
        )
    if has_accelerate_hooks(model):  # calibrated where it is; cut on a plain copy
        model = materialized_copy(model)
    generator = torch.Generator().manual_seed(scoring.seed)
    scores, used = {}, {}
    chosen = {g.id for g in cut_groups(analysis, planning)}  # exact residual streams too
    for group in analysis.prunable:
        if group.kind in planning.kinds or group.id in chosen:
            scores[group.id], used[group.id] = score_group(
                model,
                group,
                scoring.criterion,
                stats,
                generator,
                planning.allocation != "relative",
            )
    plan = make_plan(analysis, scores, planning, stats.block_influence if stats else None, weights)
    step(f"cutting ({len(plan.keep)} groups, {len(plan.remove_blocks)} whole blocks)")
    pruned = apply(model, plan, analysis=analysis)
    step("verifying the cut against the masked original" if cut.verify else "")
    check = verify(model, pruned, plan, inputs, analysis=analysis) if cut.verify else None
    _accept(check)
    done = None
    if cut.compensate and stats is not None:  # a weight-only cut has nothing to refit on
        method = cut.compensate
        layers = compensate_consumers(model, pruned, plan, analysis, stats, method, cut.damp)
        if layers:  # weights changed on purpose: save and verify must know
            done = f"{COMPENSATIONS[method]} ({len(layers)} layers)"
            record_compensation(pruned, done, check)
    step("measuring the result")
    after = analyze(pruned, inputs, submodules=tuple(submodules))
    report = PruneReport(
        _count(model),
        _count(pruned),
        count_flops(model),
        count_flops(pruned),
        used,
        check,
        done,
        _depth_note(choice, plan),
        target=_target(planning),
        block_params=(block_parameters(analysis), block_parameters(after)),
        block_flops=(block_flops(analysis, weights), block_flops(after, flop_weights(pruned))),
        removed_blocks=tuple(plan.remove_blocks),
        plain_loadable=describes_itself(pruned) if _has_hf_config(pruned) else None,
    )
    return PruneResult(pruned, plan, report, scores)


def _accept(check: VerifyReport | None) -> None:
    """Refuse a cut that does not verify (groups inexact by nature excepted,
    when the plan's exact groups verify without them); warn when the check
    could not see the cut."""
    if check is None:
        return
    if not check.accepted:
        raise VerificationError(
            f"the cut model does not match the masked original (max rel {check.max_rel:.3g}, "
            f"tolerance {check.tolerance:g}), so it is not returned; the model is unchanged. "
            "Please report this with the model's class; meanwhile exclude the failing "
            f"groups with ignore=[...].\n{check}",
            report=check,
        )
    if check.weak:
        warnings.warn(check.power_note().strip(), stacklevel=4)


def _target(options: PlanOptions) -> str:
    for name, unit in (
        ("ratio", "of block parameters"),
        ("params", "block parameters"),
        ("flops_ratio", "of block FLOPs per token"),
        ("flops", "block FLOPs per token"),
    ):
        value = getattr(options, name)
        if value is not None:
            return f"{name}={value} {unit}"
    return f"layers={options.layers}"


def _calibrate(
    model,
    analysis: Analysis,
    scoring: CalibrationOptions,
    calib,
    tokenizer,
    options: PlanOptions,
    cut: CutOptions,
    progress: bool,
    depth: int = 0,
    inputs: Any = None,
    loss_fn: Callable[..., torch.Tensor] | None = None,
) -> Statistics | None:
    """Statistics the criterion, the compensation and ``depth`` whole-block
    removals need; ``None`` when nothing needs data. A depth chosen by
    ``layers="auto"`` does not demand data: without it the planner warns and
    cuts widths only. A compensation with nothing to calibrate on is dropped
    only when the criterion needs no data either (weight-only pruning)."""
    spec = CRITERIA[scoring.criterion]
    compensate = cut.compensate if (calib is not None or spec.needs_calibration) else None
    demanded = spec.needs_calibration or compensate or options.layers not in (0, "auto")
    if not (demanded or depth) or (calib is None and not demanded):
        return None
    examples = loss_fn is not None or not reads_token_ids(model)  # the user's own batches
    if calib is None and not (examples and inputs is not None):
        needs = (
            f"criterion '{scoring.criterion}'"
            if spec.needs_calibration
            else f"layers={options.layers}"
        )
        raise InputError(
            f"{needs} needs calibration data: pass calib=<text file, token ids or batches> "
            "(with tokenizer= for text), or criterion='magnitude' for a weight-only cut"
        )
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
    if examples:
        return calibrate_examples(
            model,
            example_batches(calib, inputs),
            loss_fn=loss_fn,
            gradients=spec.needs_gradients,
            gram_for=consumers,
            blocks=blocks,
            progress=progress,
        )
    batches = token_batches(calib, tokenizer, scoring.samples, scoring.length)
    return calibrate(
        model,
        batches,
        gradients=spec.needs_gradients,
        gram_for=consumers,
        blocks=blocks,
        progress=progress,
        layerwise=scoring.layerwise,
        device=scoring.device,
        stack=[b.name for b in analysis.blocks],
    )


def _depth_note(choice, plan: Plan) -> str | None:
    if choice is None:
        return None
    if len(plan.remove_blocks) != choice.layers:
        return f"{choice}; not applied: no block scores without calibration data"
    return str(choice)


def _has_hf_config(model: nn.Module) -> bool:
    return hasattr(getattr(model, "config", None), "to_dict")


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
