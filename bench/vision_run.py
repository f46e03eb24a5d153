"""One model of the vision sweep through one tool (run in a worker process by
bench/vision_coverage.py): a row of what happened."""

from __future__ import annotations

import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree
from vision_models import VisionModel, build

ENOUGH = 0.25


def run_surgeon(spec: VisionModel, ratio: float) -> dict[str, Any]:
    import surgeon

    warnings.filterwarnings("ignore")
    model, inputs = build(spec)
    before = _count(model)
    started = time.time()
    try:
        options = {"submodules": list(spec.parts)} if spec.parts else {}
        result = surgeon.prune(
            model, ratio, criterion="magnitude", inputs=inputs, progress=False, **options
        )
    except Exception as error:  # noqa: BLE001 - a row of the table
        return {"error": _describe(error), "params": before}
    report = result.report
    check = report.verification
    removed = 1 - _count(result.model) / before
    runs, why = True, ""  # verify ran the whole pruned model
    if spec.parts:  # verify ran the parts: the whole pruned detector must run too
        runs, why = _runs_like(model, result.model, inputs)
    row = {
        "params": before,
        "size": spec.size,
        "removed": round(removed, 4),
        "block_removed": round(1 - report.block_params[1] / report.block_params[0], 4)
        if report.block_params and report.block_params[0]
        else 0.0,
        "ok": bool(check and check.ok),
        "max_rel": check.max_rel if check else None,
        "power": getattr(check, "power", None),
        "weak": bool(getattr(check, "weak", True)),
        "runs": runs,
        "prune_seconds": round(time.time() - started, 1),
        "groups_cut": len(result.plan.keep),
    }
    row["handled"] = row["ok"] and not row["weak"] and runs and removed >= ENOUGH
    if not row["handled"]:
        row["why"] = _why_not(row, why)
    return row


def run_tp(spec: VisionModel, ratio: float) -> dict[str, Any]:
    from tp_baseline import tp_prune_vision

    warnings.filterwarnings("ignore")
    model, inputs = build(spec)
    reference = _outputs(model, inputs)
    before = _count(model)
    started = time.time()
    example = inputs[0] if spec.task == "detection" else inputs
    if spec.task == "optical flow":
        example = inputs
    try:
        pruned = tp_prune_vision(model, example, spec.name, ratio)
    except Exception as error:  # noqa: BLE001
        return {"error": _describe(error), "params": before}
    removed = 1 - _count(pruned) / before
    try:
        shapes = _shapes(_outputs(pruned, inputs))
        runs = shapes == _shapes(reference)
        why = "" if runs else f"output shapes changed: {shapes} vs {_shapes(reference)}"
    except Exception as error:  # noqa: BLE001
        runs, why = False, f"the pruned model does not run: {_describe(error)}"
    row = {
        "params": before,
        "removed": round(removed, 4),
        "runs": runs,
        "prune_seconds": round(time.time() - started, 1),
    }
    row["handled"] = runs and removed > 0
    if not row["handled"]:
        row["why"] = why or "nothing removed"
    return row


def _runs_like(original: nn.Module, pruned: nn.Module, inputs) -> tuple[bool, str]:
    """The whole pruned model runs on the inputs with the original's output shapes."""
    try:
        shapes, expected = _shapes(_outputs(pruned, inputs)), _shapes(_outputs(original, inputs))
    except Exception as error:  # noqa: BLE001
        return False, f"the pruned model does not run: {_describe(error)}"
    if shapes != expected:
        return False, "output shapes changed"
    return True, ""


def _outputs(model: nn.Module, inputs):
    with torch.no_grad():
        return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def _shapes(outputs) -> list:
    """Output shapes; a detection model's box count depends on its scores, so
    only the trailing dimensions count there."""
    return [tuple(t.shape[1:]) for t in pytree.tree_leaves(outputs) if isinstance(t, torch.Tensor)]


def _why_not(row: dict, why: str) -> str:
    if not row["ok"]:
        return f"verify: mismatch (max rel {row['max_rel']:.3g})"
    if row["weak"]:
        return f"verify: weak check (power {row['power']:.3g})"
    if why:
        return why
    return f"removed {row['removed']:.1%} < {ENOUGH:.0%} of parameters"


def _describe(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/main/" in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first[:240]} (at {where})"


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
