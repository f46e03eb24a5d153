"""The readable table behind ``Analysis.summary()``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .analysis import Analysis

__all__ = ["summary_table"]


def _units(group) -> str:
    if group.kind == "attention":
        return f"{group.kv_heads} kv x {group.q_per_kv} q x {group.head_dim} hd"
    return " x ".join(str(level.size) for level in group.levels)


def _modules(group, limit: int = 3) -> str:
    modules = [m or "<root>" for m in group.modules]
    text = ", ".join(modules[:limit])
    return text + (f" (+{len(modules) - limit})" if len(modules) > limit else "")


def summary_table(analysis: Analysis) -> str:
    rows = [("group", "kind", "units", "params", "FLOPs/token", "modules")]
    for group in analysis.prunable:
        params = group.params_covered
        rows.append(
            (
                group.id,
                group.kind.value,
                _units(group),
                f"{params:,}",
                f"{2 * params:,}",
                _modules(group),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        f"{analysis.model_class}: {len(analysis.prunable)} prunable groups, "
        f"{len(analysis.frozen)} frozen, {len(analysis.blocks)} repeated blocks "
        f"(captured by {analysis.capture_method}, {analysis.node_count} nodes)"
    ]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if analysis.frozen:
        lines.append("")
        lines.append("frozen:")
        for group in analysis.frozen:
            lines.append(f"  {group.id} ({group.kind.value}, {group.size} units): {group.frozen}")
    inexact = [g for g in analysis.prunable if not g.mask_equivalent]
    if inexact:
        lines.append("")
        lines.append(
            "removing units changes more than masking (norm statistics) in: "
            + ", ".join(g.id for g in inexact)
        )
    whole = [(g, level, why) for g in analysis.prunable for level, why in g.whole_levels]
    if whole:
        lines.append("")
        lines.append("levels kept whole (a size written into the code):")
        for group, level, why in whole:
            lines.append(f"  {group.id} level {level}: {why}")
    if analysis.blocks:
        removable = [b for b in analysis.blocks if b.removable]
        containers = sorted({b.container for b in analysis.blocks})
        lines.append("")
        lines.append(
            f"depth: {len(removable)} of {len(analysis.blocks)} blocks in "
            f"{', '.join(containers)} are removable residual blocks"
        )
    if analysis.unknown_ops:
        lines.append("")
        lines.append(
            "ops without a coupling rule (their axes are frozen): "
            + ", ".join(sorted(analysis.unknown_ops))
        )
    return "\n".join(lines)
