"""The property itself: analyze, draw a plan, apply, verify, and classify the
outcome (:func:`check`)."""

from __future__ import annotations

import copy
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

import surgeon

from .build import Case
from .plans import Trial

__all__ = ["TOLERANCE", "FuzzerBug", "Outcome", "check", "cut_and_verify", "reason_of"]

TOLERANCE = 1e-5


@dataclass
class Outcome:
    """``status`` is one of ``verified``, ``verified-inexact`` (a mismatch wholly
    explained by norm-statistics groups listed in ``report.inexact``),
    ``refused`` (a SurgeonError before surgery; ``reason`` says which),
    ``nothing-prunable``, or a failure: ``crash`` (another exception inside the
    library), ``mismatch`` (silent), ``state`` (the model was changed by a
    refused or copying call)."""

    status: str
    reason: str = ""
    stage: str = ""
    detail: str = ""
    trial: Trial | None = None
    max_rel: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in ("crash", "mismatch", "state")

    @property
    def key(self) -> str:
        return f"{self.status}: {self.reason}" if self.reason else self.status

    def describe(self) -> str:
        lines = [f"{self.key} (stage {self.stage or '-'})"]
        if self.trial is not None:
            lines.append(f"plan: {self.trial.plan!r} inplace={self.trial.inplace}")
        if self.detail:
            lines.append(self.detail)
        return "\n".join(lines)


class FuzzerBug(AssertionError):
    """The built model does not run by itself: a bug in this grammar, not the library."""


def _snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], str]:
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=False).items()}
    return state, repr(model)


def _changed(model: nn.Module, before) -> str | None:
    state, text = before
    now = model.state_dict()
    if now.keys() != state.keys():
        return f"state_dict keys changed: {sorted(set(now) ^ set(state))}"
    for name, tensor in state.items():
        if now[name].shape != tensor.shape or not torch.equal(now[name], tensor):
            return f"tensor '{name}' changed ({tuple(tensor.shape)} -> {tuple(now[name].shape)})"
    if repr(model) != text:
        return "module attributes changed (repr differs)"
    return None


def reason_of(error: BaseException) -> str:
    """A short, number-free key for an expected refusal."""
    name = type(error).__name__
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    found = re.search(r"failed with: (.*?)(?:\. A size written|$)", text)
    if found:
        text = "no longer runs: " + found.group(1)
    elif isinstance(error, surgeon.PlanError):
        text = re.sub(r"^plan\['[^']*'\]: ", "", text)
    elif "could not capture" in text:
        text = re.sub(r"^.*?torch\.export failed in ", "capture failed in ", text)
    text = re.sub(r"'[^']*'", "'…'", text)
    text = re.sub(r"\[[^\]]*\]", "[…]", text)
    text = re.sub(r"\d+", "N", text)
    return f"{name}: {text[:90]}"


def _tail(error: BaseException, lines: int = 12) -> str:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _crash_reason(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    own = [
        f for f in frames if "/site-packages/" not in f.filename and "/lib/python" not in f.filename
    ]
    where = own[-1] if own else (frames[-1] if frames else None)
    at = f" at {where.filename.rsplit('/', 2)[-2:][-1]}:{where.name}" if where else ""
    message = str(error).splitlines()[0] if str(error) else ""
    message = re.sub(r"\d+", "N", message)[:80]
    return f"{type(error).__name__}{at}: {message}"


def check(case: Case, draw: Callable[[surgeon.Analysis], Trial]) -> Outcome:
    """Analyze ``case``, draw a trial with ``draw(analysis)``, apply, verify.

    The property: either the cut model verifies (exactly, or with every mismatch
    explained by the norm-statistics groups the report lists in ``inexact``), or
    a SurgeonError is raised before surgery and the model is unchanged. Any
    other exception inside the library is a crash; a mismatch not explained is
    a silent mismatch.
    """
    model, inputs = case.model, case.inputs
    try:
        with torch.no_grad():
            model(*inputs)
    except Exception as error:  # the grammar built something that does not run
        raise FuzzerBug(f"{case!r} does not run: {error!r}") from error
    before = _snapshot(model)

    try:
        analysis = surgeon.analyze(model, inputs)
    except surgeon.SurgeonError as error:
        return Outcome("refused", reason_of(error), "analyze", _tail(error, 3))
    except Exception as error:
        return Outcome("crash", _crash_reason(error), "analyze", _tail(error))
    if (why := _changed(model, before)) is not None:
        return Outcome("state", "analyze changed the model", "analyze", why)
    if not analysis.prunable and not any(b.removable for b in analysis.blocks):
        return Outcome("nothing-prunable")

    trial = draw(analysis)
    plan = trial.plan
    work = copy.deepcopy(model) if trial.inplace else model
    work_before = _snapshot(work) if trial.inplace else before
    try:
        pruned = surgeon.apply(work, plan, inplace=trial.inplace, analysis=analysis)
    except surgeon.SurgeonError as error:
        why = _changed(work, work_before)
        if why is None and trial.inplace:
            why = _changed(model, before)
        if why is not None:
            return Outcome(
                "state",
                f"{type(error).__name__} left the model changed",
                "apply",
                f"{why}\n{_tail(error, 3)}",
                trial,
            )
        return Outcome("refused", reason_of(error), "apply", _tail(error, 3), trial)
    except Exception as error:
        return Outcome("crash", _crash_reason(error), "apply", _tail(error), trial)
    if not trial.inplace and (why := _changed(model, before)) is not None:
        return Outcome("state", "apply (copy) changed the original", "apply", why, trial)

    try:
        report = surgeon.verify(model, pruned, plan, inputs, analysis=analysis)
    except Exception as error:
        return Outcome("crash", _crash_reason(error), "verify", _tail(error), trial)
    if report.ok and report.max_rel <= TOLERANCE:
        return Outcome("verified", trial=trial, max_rel=report.max_rel)

    # A mismatch must be explained by norm-statistics groups the report names.
    cut = {c for c, units in plan.keep.items() if _removes(analysis, c, units)}
    inexact = {c for c in cut if not analysis.group(c).mask_equivalent}
    detail = str(report)
    if not inexact:
        return Outcome("mismatch", "silent mismatch", "verify", detail, trial, report.max_rel)
    if set(report.inexact) != inexact:
        return Outcome(
            "mismatch",
            "inexact groups not listed",
            "verify",
            f"cut non-mask-equivalent: {sorted(inexact)}\n{detail}",
            trial,
            report.max_rel,
        )
    rest = surgeon.Plan(
        {k: v for k, v in plan.keep.items() if k not in inexact}, plan.remove_blocks
    )
    try:
        rest_pruned = surgeon.apply(model, rest, analysis=analysis)
        rest_report = surgeon.verify(model, rest_pruned, rest, inputs, analysis=analysis)
    except Exception as error:
        return Outcome("crash", _crash_reason(error), "verify-rest", _tail(error), trial)
    if not (rest_report.ok and rest_report.max_rel <= TOLERANCE):
        return Outcome(
            "mismatch",
            "silent mismatch besides inexact groups",
            "verify",
            f"without {sorted(inexact)}:\n{rest_report}",
            Trial(rest),
            report.max_rel,
        )
    return Outcome("verified-inexact", trial=trial, max_rel=report.max_rel)


def _removes(analysis: surgeon.Analysis, group_id: str, units) -> bool:
    return len(set(units)) < analysis.group(group_id).size


def cut_and_verify(model: nn.Module, x: torch.Tensor, plan):
    """Analyse, apply ``plan`` and verify: (report, pruned model, analysis)."""
    analysis = surgeon.analyze(model, x)
    pruned = surgeon.apply(model, plan, analysis=analysis)
    return surgeon.verify(model, pruned, plan, x, analysis=analysis), pruned, analysis
