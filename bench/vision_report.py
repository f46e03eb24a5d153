"""The vision section of docs/coverage.md, from the sweep's cached rows."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from doc_sections import replace_section

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "coverage.md"
HEADING = "## Vision: torchvision and timm beside Torch-Pruning"
COMMAND = "/work/venv-vision/bin/python bench/vision_coverage.py --write"


def write_section(rows: dict, models, write: bool = False) -> str:
    text = render(rows, models)
    if write:
        replace_section(DOC, HEADING, text, title="# Coverage")
    return text


def render(rows: dict, models) -> str:
    ours = [rows.get((m.key, "surgeon")) for m in models]
    theirs = [rows.get((m.key, "tp")) for m in models]
    done = [m for m, a, b in zip(models, ours, theirs, strict=True) if a and b]
    handled = sum(bool(r and r.get("handled")) for r in ours)
    tp_handled = sum(bool(r and r.get("handled")) for r in theirs)
    both = sum(
        bool(a and a.get("handled") and b and b.get("handled"))
        for a, b in zip(ours, theirs, strict=True)
    )
    lines = [
        HEADING,
        "",
        f"Written by `{COMMAND}` (bench/vision_coverage.py; results cached in "
        "bench/results/vision_coverage.jsonl). Models: Torch-Pruning 1.6.1's own torchvision "
        "list (examples/torchvision_models: 85 models, classification, segmentation, "
        "detection, optical flow) and twelve timm families (the smallest member of each), "
        "random weights with BatchNorm statistics estimated on random batches (and weights "
        "left at zero by initialisation woken: bench/vision_models.py), a batch of one "
        "image: 224x224 where the model fixes its size (ViT, Swin, DeiT, LeViT, Mixer), "
        "160 for Inception, 320 for detectors (not resized), 128 otherwise (size column). "
        "Both tools see the same model and inputs.",
        "",
        '- fx-surgeon: `surgeon.prune(model, 0.3, criterion="magnitude", inputs=x)` with '
        "every other option at its default (detection models: `submodules=` naming the "
        "backbone and the heads). Handled = verified against the masked original with a "
        "non-vacuous check (masking the removed units moves the outputs by more than 10x the "
        "tolerance), the whole pruned model runs, and at least 25% of all parameters removed.",
        "- Torch-Pruning: its own example's `my_prune` (group L1 magnitude, its per-model "
        "ignored layers) at channel ratio 0.3. Handled = the pruner runs and the pruned model "
        "runs with the original's output shapes (Torch-Pruning has no equivalence check).",
        "",
        f"**fx-surgeon handled {handled} of {len(models)}; Torch-Pruning {tp_handled} of "
        f"{len(models)}; both {both}.** ({len(done)} of {len(models)} models have both rows.)",
        "",
    ]
    if len(done) < len(models):
        pairs = [(a, b) for a, b in zip(ours, theirs, strict=True) if a and b]
        mine = sum(bool(a.get("handled")) for a, _ in pairs)
        other = sum(bool(b.get("handled")) for _, b in pairs)
        lines += [
            f"On the {len(done)} models both tools have run so far: fx-surgeon {mine}, "
            f"Torch-Pruning {other}. Rows marked 'not run' have not been run yet (the sweep "
            "runs on two shared CPU cores); re-running the command fills them from the cache.",
            "",
        ]
    removed = sorted(r["removed"] for r in ours if r and r.get("handled"))
    tp_removed = sorted(r["removed"] for r in theirs if r and r.get("handled"))
    if removed and tp_removed:
        lines += [
            f"Median parameters removed where handled: fx-surgeon {_median(removed):.1%}, "
            f"Torch-Pruning {_median(tp_removed):.1%}.",
            "",
        ]
    causes = Counter(_cause(r) for r in ours if r and not r.get("handled"))
    if causes:
        lines += ["### Why fx-surgeon did not handle a model", ""]
        for cause, count in causes.most_common():
            example = next(
                m.key
                for m, r in zip(models, ours, strict=True)
                if r and not r.get("handled") and _cause(r) == cause
            )
            lines.append(f"- {count} x {cause} (e.g. {example})")
        lines.append("")
    lines += [
        "### Per model",
        "",
        "| model | task | size | params | fx-surgeon removed | verify (power) | handled "
        "| TP removed | TP handled | note |",
        "|---|---|---:|---:|---:|---|---|---:|---|---|",
    ]
    for m, a, b in zip(models, ours, theirs, strict=True):
        lines.append(_row(m, a, b))
    return "\n".join(lines) + "\n"


def _row(m, a, b) -> str:
    params = (a or b or {}).get("params")
    size = (a or {}).get("size") or (224 if a and "params" in a else m.size)  # early rows: 224
    cells = [m.key, m.task, str(size), f"{params / 1e6:.1f}M" if params else "-"]
    if a is None:
        cells += ["-", "not run", "-"]
    elif "error" in a:
        cells += ["-", "error", "no"]
    else:
        power = a.get("power")
        check = ("ok" if a["ok"] else "MISMATCH") + (f" ({power:.2g})" if power else "")
        if a.get("weak"):
            check += " weak"
        cells += [f"{a['removed']:.1%}", check, "yes" if a.get("handled") else "no"]
    if b is None:
        cells += ["-", "not run"]
    else:
        cells += [f"{b['removed']:.1%}" if "removed" in b else "-", _yes(b)]
    why = (a or {}).get("why") or (a or {}).get("error")
    if why and why.startswith("removed") and (a or {}).get("block_removed"):
        # the target is a share of the block parameters: say how much of the model they are
        share = a["removed"] / a["block_removed"]
        why += (
            f" ({a['block_removed']:.1%} of the block parameters the target counts, "
            f"{share:.0%} of all; the rest cannot be cut exactly)"
        )
    notes = [n for n in (why, _tp_note(b)) if n]
    cells.append("; ".join(notes).replace("|", "/")[:200])
    return "| " + " | ".join(cells) + " |"


def _tp_note(b) -> str:
    if not b or b.get("handled"):
        return ""
    return "TP: " + (b.get("why") or b.get("error") or "")


def _yes(row) -> str:
    return "yes" if row.get("handled") else "no"


def _cause(row: dict) -> str:
    """The failure without what names one model (modules, sizes)."""
    text = row.get("why") or row.get("error") or "unknown"
    text = re.sub(r"'[^']*'", "'...'", text.split(" (at ")[0])
    text = re.sub(r"\d+(\.\d+)?(e-?\d+)?%?", "N", text)
    return text[:160]


def _median(values: list[float]) -> float:
    return values[len(values) // 2]
