"""Pictures of an analysis: Graphviz drawings (:mod:`surgeon.viz.dot`) and a
self-contained interactive HTML report (:mod:`surgeon.viz.html`).

What both share lives here (group colours, unit text, the choice of block,
rendering DOT), so a group looks the same in every picture. The drawing and
report functions are imported on first use, which keeps ``import surgeon.viz``
cheap.
"""

from __future__ import annotations

import colorsys
import importlib
from pathlib import Path
from typing import Any

import graphviz

from surgeon.analyzers.analysis import Analysis
from surgeon.analyzers.groups import Block, Group
from surgeon.errors import InputError, SurgeonError

__all__ = [
    "GraphvizNotFound",
    "group_colors",
    "html_report",
    "ops_dot",
    "pick_block",
    "render",
    "to_dot",
    "units_text",
]

# Mid-light colours: legible under black text and as 2px edges. Grey tints are
# kept for frozen groups.
PALETTE = ("#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854", "#ffd92f", "#e5c494")
PALETTE += ("#80b1d3", "#fb8072", "#bc80bd")
_LAZY = {"to_dot": "dot", "ops_dot": "dot", "html_report": "html"}


class GraphvizNotFound(SurgeonError, RuntimeError):
    """The Graphviz ``dot`` executable is needed to render and is not on PATH."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"surgeon.viz.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'surgeon.viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


def group_colors(analysis: Analysis) -> dict[str, str]:
    """One stable, distinct colour per group id: the palette in analysis order for
    prunable groups (then golden-angle hues), grey tints for frozen ones. Colours
    repeat only past a few thousand groups, when the hues run out."""
    colors: dict[str, str] = {}
    taken: set[str] = set()
    for frozen, groups in ((False, analysis.prunable), (True, analysis.frozen)):
        for i, group in enumerate(groups):
            color = PALETTE[i] if i < len(PALETTE) and not frozen else ""
            for step in range(1000):
                if color and color not in taken:
                    break
                color = _hue(i + step, 0.1 if frozen else 0.45, 0.92 - step % 5 * 0.06)
            colors[group.id] = color
            taken.add(color)
    return {group.id: colors[group.id] for group in analysis.groups}


def _hue(i: int, saturation: float, value: float) -> str:
    rgb = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, saturation, value)
    return "#" + "".join(f"{round(channel * 255):02x}" for channel in rgb)


def units_text(group: Group) -> str:
    """A group's unit structure (:attr:`Group.units_text`, the one formatter)."""
    return group.units_text


def pick_block(analysis: Analysis, layer: int | str | None = None) -> Block:
    """The block ``layer`` names: an index into ``analysis.blocks`` (default 0, negative
    counts from the end) or a block name."""
    blocks: dict[Any, Block] = dict(enumerate(analysis.blocks, -len(analysis.blocks)))
    blocks.update(enumerate(analysis.blocks))
    blocks.update((block.name, block) for block in analysis.blocks)
    key = 0 if layer is None else layer
    if isinstance(key, bool) or key not in blocks:
        names = ", ".join(b.name for b in analysis.blocks) or "none"
        raise InputError(f"no block {layer!r} in {analysis.model_class}; blocks: {names}")
    return blocks[key]


def render(dot_source: str, path: str | Path) -> Path:
    """Write ``dot_source`` to ``path``: .svg, .png or .pdf through Graphviz's
    ``dot`` executable, or .dot as text. Returns the path."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("svg", "png", "pdf", "dot"):
        raise InputError(f"cannot render {path.name}: use a .svg, .png, .pdf or .dot suffix")
    try:
        data = dot_source.encode() if fmt == "dot" else graphviz.Source(dot_source).pipe(format=fmt)
    except graphviz.ExecutableNotFound as error:
        raise GraphvizNotFound(
            f"cannot render {path.name}: the Graphviz executable 'dot' is not on PATH; install "
            "the Debian package 'graphviz' (apt-get install graphviz, or run "
            "scripts/install-system-deps.sh), or write a .dot file instead"
        ) from error
    except graphviz.CalledProcessError as error:
        raise SurgeonError(f"Graphviz 'dot' failed on {path.name}: {error.stderr!r}") from error
    path.write_bytes(data)
    return path
