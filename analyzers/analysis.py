"""``analyze``: capture, couple, group; and the :class:`Analysis` it returns."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

import networkx as nx
from torch import nn

from surgeon.errors import CaptureError, InputError

from .blocks import find_blocks
from .capture import Capture, capture
from .checks import check_devices, check_dtypes
from .compared import ComparedWidths, find_compared
from .dispatched import has_accelerate_hooks, meta_skeleton, to_meta
from .example_inputs import example_inputs, normalise_inputs, with_attention_mask
from .grouping import form_groups
from .groups import Block, Group, GroupKind
from .limits import freeze_fixed_heads, without_bias_caches
from .names import ParameterNames
from .propagate import propagate
from .sizes import ModelSize
from .submodules import Parts

__all__ = ["Analysis", "AnalyzeOptions", "analyze"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class AnalyzeOptions:
    """Options of :func:`analyze` (keyword arguments); unknown names are
    refused rather than ignored."""

    # capture only these submodules, wired as the model calls them
    # (analyzers/submodules.py): for a detector's backbone and heads
    submodules: tuple[str, ...] = ()

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> AnalyzeOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InputError(
                f"unknown option(s) for analyze: {', '.join(unknown)}; "
                f"known options: {', '.join(sorted(known)) or 'none'}"
            )
        return cls(**options)


def analyze(model: nn.Module, inputs: Any = None, **options: Any) -> Analysis:
    """Capture ``model`` and find the groups of parameter slices that must be
    removed together.

    ``inputs`` is a tensor, a tuple of positional args, a dict of keyword args or
    an ``(args, kwargs)`` pair; without it, inputs are derived from a Hugging Face
    model's config. The model may live on the meta device. It is not modified.

    ``submodules=["backbone", "rpn.head", ...]`` captures only those
    submodules, for a model whose own forward does not export (a detector's
    data-dependent post-processing): the model runs once on ``inputs``, and
    the chosen submodules are analysed as the model wired them, on what they
    received (:class:`~surgeon.analyzers.submodules.Parts`). A plan made on
    that analysis applies to the whole model.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"analyze expects a torch.nn.Module, not {type(model).__name__}")
    chosen = AnalyzeOptions.from_kwargs(options).submodules
    check_dtypes(model)
    if has_accelerate_hooks(model):  # dispatched by accelerate: analyse its structure
        model, inputs = meta_skeleton(model), to_meta(inputs)
    derived = inputs is None
    args, kwargs = example_inputs(model) if derived else normalise_inputs(inputs)
    check_devices(model, args, kwargs)
    if chosen:
        parts = Parts(model, list(chosen), args, kwargs)
        analysis = analyze(parts, (parts.inputs, {}))
        names = ", ".join(parts.names)
        return replace(analysis, model_class=f"{parts.model_class} ({names})", parts=parts)
    with without_bias_caches(model):
        captured, kwargs = _capture(model, args, kwargs, derived)
    coupling = propagate(captured)
    names = ParameterNames(model)
    coupling.params = {names.canonical(n): axes for n, axes in coupling.params.items()}
    coupling.shapes = {names.canonical(n): shape for n, shape in coupling.shapes.items()}
    blocks = find_blocks(model, captured)
    groups = freeze_fixed_heads(model, form_groups(coupling, blocks, names.aliases, names.order))
    groups = _freeze_unseen_widths(groups, captured)
    return Analysis(
        inputs=(args, kwargs),
        model_class=type(model).__name__,
        groups=tuple(groups),
        blocks=tuple(blocks),
        unknown_ops={op: tuple(nodes) for op, nodes in coupling.unknown_ops.items()},
        capture_method=captured.method,
        node_count=sum(1 for _ in captured.graph.nodes),
        pinned_outputs=tuple(coupling.pinned_outputs),
        size=ModelSize.of(model),
        read=frozenset(coupling.shapes),
        compared=find_compared(model, groups),
    )


def _capture(model: nn.Module, args: tuple, kwargs: dict, derived: bool) -> tuple[Capture, dict]:
    """Capture on the inputs; derived token ids that export cannot run alone are
    given the all-ones attention mask a tokenizer returns with them (a model that
    builds it only when not compiling), and those become the analysis' inputs."""
    try:
        return capture(model, args, kwargs), kwargs
    except CaptureError as error:
        masked = with_attention_mask(model, kwargs) if derived else None
        if masked is None:
            raise
        try:
            return capture(model, args, masked), masked
        except CaptureError as with_mask:  # both said: either may be the one to mend
            raise CaptureError(
                f"{error}\n  with the all-ones attention_mask a tokenizer gives, "
                f"in module '{with_mask.module or '<root>'}': {with_mask.cause}",
                module=error.module,
                cause=error.cause,
            ) from with_mask


def _freeze_unseen_widths(groups: list[Group], captured: Capture) -> list[Group]:
    """A draft capture follows the example inputs' branches: a parameter the
    examples branched past (experts no example token was routed to,
    Longformer's global projections: its module's parent or a sibling ran) is
    in no group, yet other inputs read it at the hidden size. Hidden groups
    are frozen then, naming it; the widths inside the modules the examples ran
    stay prunable. (A module that never runs, an unused pooler, is no branch.)"""
    if not captured.method.startswith("draft_export"):
        return groups
    ran = {captured.module_of(node) for node in captured.graph.nodes}
    unread = [
        name
        for node in captured.graph.nodes
        if node.op == "placeholder"
        and (name := captured.params.get(node.name))
        and not node.users
        and _beside_a_run(name.rpartition(".")[0], ran)
    ]
    if not unread:
        return groups
    more = f" (+{len(unread) - 1} more)" if len(unread) > 1 else ""
    reason = (
        f"the draft capture followed the example inputs, which never reached '{unread[0]}'"
        f"{more}: other inputs read it at the hidden size, which a cut would leave stale"
    )
    return [
        replace(g, frozen=reason) if g.kind == GroupKind.HIDDEN and g.frozen is None else g
        for g in groups
    ]


def _beside_a_run(owner: str, ran: set[str]) -> bool:
    """Whether ``owner``'s parent ran, or a module under it did (a sibling expert)."""
    parent = owner.rpartition(".")[0]
    return bool(parent) and any(r == parent or r.startswith(parent + ".") for r in ran)


@dataclass(frozen=True)
class Analysis:
    """What :func:`analyze` found. Plain data: print it, or save ``to_json()``."""

    model_class: str
    groups: tuple[Group, ...]
    blocks: tuple[Block, ...]
    unknown_ops: dict[str, tuple[str, ...]]
    capture_method: str
    node_count: int
    inputs: tuple[tuple, dict[str, Any]] = field(default=((), {}), repr=False, compare=False)
    # (leaf index, label, shape) of outputs no cut may change (their axes are pinned)
    pinned_outputs: tuple[tuple[int, str, tuple[int, ...]], ...] = field(
        default=(), repr=False, compare=False
    )
    # parameters held and read per token: what a speed estimate needs (surgeon.plan.depth)
    size: ModelSize | None = field(default=None, repr=False, compare=False)
    # the captured submodules when analyze(..., submodules=...) chose them
    parts: Parts | None = field(default=None, repr=False, compare=False)
    # the parameters and buffers the captured forward reads (None: not known)
    read: frozenset[str] | None = field(default=None, repr=False, compare=False)
    # widths the model's code compares, and the groups that set them (a plan keeps
    # the comparisons' outcomes: analyzers/compared.py)
    compared: tuple[ComparedWidths, ...] = field(default=(), repr=False, compare=False)

    @property
    def frozen(self) -> tuple[Group, ...]:
        """Groups nothing may be removed from, each with its reason."""
        return tuple(g for g in self.groups if g.frozen is not None)

    @property
    def prunable(self) -> tuple[Group, ...]:
        return tuple(g for g in self.groups if g.frozen is None)

    def group(self, group_id: str) -> Group:
        for group in self.groups:
            if group.id == group_id:
                return group
        raise KeyError(f"no group '{group_id}'; groups are: {', '.join(g.id for g in self.groups)}")

    def by_kind(self, kind: str) -> tuple[Group, ...]:
        return tuple(g for g in self.groups if g.kind == kind)

    def to_networkx(self) -> nx.DiGraph:
        """Groups, parameters and blocks as a graph: ``group -> param`` edges carry
        the pruned ``dim`` and its index layout; ``block -> param`` edges show
        which parameters a depth cut removes."""
        graph = nx.DiGraph(model=self.model_class)
        for group in self.groups:
            graph.add_node(
                group.id,
                type="group",
                kind=group.kind.value,
                size=group.size,
                frozen=group.frozen,
                mask_equivalent=group.mask_equivalent,
            )
            for member in group.members:
                graph.add_node(member.param, type="param", shape=member.shape, module=member.module)
                graph.add_edge(group.id, member.param, dim=member.dim, layout=str(member.layout))
        for block in self.blocks:
            graph.add_node(
                block.name, type="block", residual=block.residual, removable=block.removable
            )
            for param in [n for n, d in graph.nodes(data=True) if d.get("type") == "param"]:
                if param.startswith(block.name + "."):
                    graph.add_edge(block.name, param)
        return graph

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model_class": self.model_class,
            "capture_method": self.capture_method,
            "groups": [self._group_dict(g) for g in self.groups],
            "blocks": [b.to_dict() for b in self.blocks],
            "unknown_ops": {op: list(nodes) for op, nodes in self.unknown_ops.items()},
            "size": self.size.to_dict() if self.size else None,
        }

    def _group_dict(self, group: Group) -> dict[str, Any]:
        data = group.to_dict()
        if self.size is not None:  # the cost model's FLOPs (experts at top_k / E)
            data["flops_per_token"] = round(self.size.flops_of(_numels(group)))
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def summary(self) -> str:
        return summary_table(self)

    def __str__(self) -> str:
        return self.summary()


def _modules(group, limit: int = 3) -> str:
    modules = [m or "<root>" for m in group.modules]
    text = ", ".join(modules[:limit])
    return text + (f" (+{len(modules) - limit})" if len(modules) > limit else "")


def _numels(group: Group) -> dict[str, int]:
    return {m.param: m.numel for m in group.members if not m.buffer}


def summary_table(analysis: Analysis) -> str:
    """The table ``Analysis.summary()`` prints: one row per prunable group, then
    the frozen groups with their reasons, inexact groups and blocks."""
    rows = [("group", "kind", "units", "params", "FLOPs/token", "modules")]
    for group in analysis.prunable:
        params = group.params_covered
        rows.append(
            (
                group.id,
                group.kind.value,
                group.units_text,
                f"{params:,}",
                f"{round(analysis.size.flops_of(_numels(group))):,}" if analysis.size else "-",
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
