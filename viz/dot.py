"""Graphviz drawings of an analysis, as DOT source text (diffable, viewable
anywhere; :func:`render` makes SVG or PNG).

* ``to_dot(analysis, "modules")``: modules holding group members, one row per
  member in its group's colour, and modules sharing a group joined in that
  colour, in model order. Runs of repeated blocks collapse into one node
  ("model.layers.1-3 (x 3 layers)") except one expanded block, so an 80-layer
  model draws as small as a 4-layer one.
* ``to_dot(analysis, "groups")``: one node per group linked to its modules.
* ``ops_dot(model, analysis, layer)``: the aten ops of one block; the analysis
  keeps groups, not the graph, so this captures the model again.

Frozen groups are grey and dashed with their reason as tooltip (SVG). User text
is escaped for HTML-like labels or DOT strings, and node ids are synthetic.
"""

from __future__ import annotations

import html
import itertools
from typing import Any

import graphviz
from graphviz.quoting import nohtml
from torch import fx, nn

from surgeon.analyzers.analysis import Analysis
from surgeon.analyzers.capture import Capture, capture
from surgeon.analyzers.example_inputs import example_inputs, normalise_inputs
from surgeon.analyzers.groups import Group, Member
from surgeon.errors import InputError
from surgeon.viz import GraphvizNotFound, group_colors, pick_block, render, units_text

__all__ = ["GraphvizNotFound", "ops_dot", "render", "to_dot"]

FONT = "Helvetica"
Item = tuple[tuple[str, ...], str, dict[str, Any]]  # (clusters to nest in, node id, attributes)
Entry = tuple[Group, Member]


def _text(value: str) -> str:
    """A DOT string attribute holding ``value`` literally (no HTML, no escapes)."""
    return nohtml(value.replace("\\", "\\\\"))


def _h(value: Any) -> str:
    """Text for an HTML-like label (Graphviz knows decimal entities only)."""
    return html.escape(str(value)).replace("&#x27;", "&#39;")


def _td(content: str, tag: str = "TD", **attrs: Any) -> str:
    extra = "".join(f' {k.upper()}="{v}"' for k, v in attrs.items() if v is not None)
    return f"<{tag}{extra}>{content}</{tag}>"


def _table(rows: list[list[str]], **attrs: Any) -> str:
    """An HTML-like label: a table of ``rows``, each a list of <TD> strings."""
    attrs = {"border": 0, "cellborder": 1, "cellspacing": 0, "cellpadding": 3, **attrs}
    return "<" + _td("".join(f"<TR>{''.join(row)}</TR>" for row in rows), "TABLE", **attrs) + ">"


class _Collapse:
    """Which block is drawn expanded, and which runs of blocks become one node."""

    def __init__(self, analysis: Analysis, layer: int | str | None) -> None:
        self.block = pick_block(analysis, layer).name if analysis.blocks else None
        self.runs: dict[str, tuple[str, str]] = {}  # block name -> (node key, label)
        for container in dict.fromkeys(b.container for b in analysis.blocks):
            blocks = [b for b in analysis.blocks if b.container == container]  # in order
            for expanded, run in itertools.groupby(blocks, key=lambda b: b.name == self.block):
                run = list(run)
                last = f"-{run[-1].name.rpartition('.')[2]}" if len(run) > 1 else ""
                label = f"{run[0].name}{last} (x {len(run)} layer{'s' if last else ''})"
                if not expanded:
                    self.runs.update((b.name, (f"run:{run[0].name}", label)) for b in run)

    def owner(self, module: str) -> tuple[str, str]:
        """(node key, label) of the node that draws ``module``."""
        path = module
        while path not in self.runs:
            if not path:
                return f"module:{module}", module or "<root>"
            path = path.rpartition(".")[0]
        return self.runs[path]

    def clusters(self, module: str) -> tuple[str, ...]:
        """The expanded block and its child holding ``module`` (self_attn, mlp)."""
        if self.block is None or not _within(module, self.block):
            return ()
        rest = module[len(self.block) + 1 :]
        return (self.block, f"{self.block}.{rest.split('.')[0]}") if "." in rest else (self.block,)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _digraph(name: str, analysis: Analysis, rankdir: str, **attrs: str) -> graphviz.Digraph:
    graph = graphviz.Digraph(name, node_attr={"fontname": FONT, "fontsize": "10"})
    graph.attr(rankdir=rankdir, fontname=FONT, fontsize="11", nodesep="0.25", ranksep="0.35")
    graph.attr(tooltip=_text(analysis.model_class), **attrs)
    graph.attr("edge", fontname=FONT, fontsize="9", arrowsize="0.6")
    return graph


def _emit(graph: graphviz.Digraph, items: list[Item], prefix: tuple[str, ...] = ()) -> None:
    """Add the nodes, nesting clusters by their path tuples."""
    for clusters, node_id, attrs in items:
        if clusters == prefix:
            graph.node(node_id, **attrs)
    children = [c[len(prefix)] for c, _, _ in items if c[: len(prefix)] == prefix != c]
    for child in dict.fromkeys(children):
        with graph.subgraph(name=_text(f"cluster_{len(prefix)}_{child}")) as sub:
            label = child[len(prefix[-1]) + 1 :] if prefix else child
            sub.attr(label=_text(label), style="rounded", color="#9e9e9e", fontcolor="#424242")
            _emit(sub, items, (*prefix, child))


def _edge(group: Group, colors: dict[str, str], **extra: Any) -> dict[str, Any]:
    tip = group.id + (f"\nfrozen: {group.frozen}" if group.frozen else "")
    attrs = {"color": colors[group.id], "penwidth": "2", "tooltip": _text(tip), **extra}
    if group.frozen:
        attrs.update(style="dashed", penwidth="1.2", fontcolor="#757575")
    return attrs


def _member_text(member: Member) -> str:
    name = member.param[len(member.module) + 1 :] if member.module else member.param
    return f"{name}[{member.dim}] {member.layout}  ({'x'.join(map(str, member.shape))})"


def _module_node(label: str, entries: list[Entry], colors: dict[str, str]) -> dict[str, Any]:
    """A module: its name, then one row per member in the member's group colour."""
    rows, tips = [[_td(f"<B>{_h(label)}</B>", colspan=2, bgcolor="#f5f5f5")]], []
    for group, member in entries:
        kind, text, style = _h(group.kind.value), _h(_member_text(member)), None
        tips.append(f"{group.id}: {member.param}[{member.dim}] {member.layout}")
        if group.frozen:
            kind, text, style = f"{kind} (frozen)", f'<FONT COLOR="#616161">{text}</FONT>', "dashed"
            tips.append(f"  frozen: {group.frozen}")
        cells = [_td(kind, bgcolor=colors[group.id], style=style)]
        rows.append([*cells, _td(text, align="LEFT", style=style)])
    return {"shape": "plain", "label": _table(rows), "tooltip": _text("\n".join(tips))}


def _run_node(label: str, entries: list[Entry], owned: set[str], colors: dict[str, str]) -> dict:
    """A collapsed run: its own groups counted by kind, one colour swatch per group."""
    groups = {g.id: g for g, _ in entries}
    kinds = [g.kind.value for g in groups.values() if g.id in owned]
    shared = ", ".join(g for g in groups if g not in owned)
    text = ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds))
    text += f"; shares {shared}" if shared else ""
    swatches = [_td("", bgcolor=colors[g], width=12, height=10) for g in groups]
    lines = [swatches[i : i + 12] for i in range(0, len(swatches), 12)]
    inner = _table(lines, cellborder=0, cellspacing=2, cellpadding=0)[1:-1]
    rows = [[_td(f"<B>{_h(label)}</B>", bgcolor="#eeeeee")], [_td(_h(text))], [_td(inner)]]
    table = _table(rows, border=1, cellborder=0, color="#616161")
    return {"shape": "plain", "label": table, "tooltip": _text("\n".join(groups))}


def _legend(graph: graphviz.Digraph, analysis: Analysis, colors: dict[str, str]) -> None:
    rows = [[_td("")] + [_td(f"<B>{h}</B>") for h in ("group", "kind", "units", "params covered")]]
    for group in analysis.groups:
        style = "dashed" if group.frozen else None
        kind = group.kind.value + (" (frozen)" if group.frozen else "")
        cells = [group.id, kind, units_text(group), f"{group.params_covered:,}"]
        rows.append([_td("", bgcolor=colors[group.id], width=16, style=style)])
        rows[-1] += [_td(_h(cell), align="LEFT", style=style) for cell in cells]
    reasons = "\n".join(f"{g.id}: frozen: {g.frozen}" for g in analysis.frozen) or "none frozen"
    with graph.subgraph(name="cluster_legend") as legend:
        legend.attr(label="groups (edges join modules cut together, in order)", style="rounded")
        legend.node("legend", shape="plain", label=_table(rows), tooltip=_text(reasons))


def _group_node(group: Group, colors: dict[str, str]) -> dict[str, Any]:
    lines = [f"<B>{_h(group.id)}</B>", _h(f"{group.kind.value}: {units_text(group)}")]
    lines += [f"{group.params_covered:,} params covered"] + ["<I>frozen</I>"] * bool(group.frozen)
    lines += ["<I>not mask-equivalent</I>"] * (not group.mask_equivalent)
    tip = [group.id, *([f"frozen: {group.frozen}"] if group.frozen else []), *group.notes]
    attrs = {"label": f"<{'<BR/>'.join(lines)}>", "shape": "box", "tooltip": _text("\n".join(tip))}
    frozen = ("filled,rounded,dashed", "#9e9e9e") if group.frozen else ("filled,rounded", "#424242")
    return {**attrs, "style": frozen[0], "color": frozen[1], "fillcolor": colors[group.id]}


def to_dot(analysis: Analysis, view: str = "modules", layer: int | str | None = None) -> str:
    """DOT source of the ``"modules"`` or ``"groups"`` view; ``layer`` (index into
    ``analysis.blocks`` or block name, default the first) is drawn expanded."""
    if view not in ("modules", "groups"):
        raise InputError(f"unknown view {view!r}: 'modules' or 'groups' (ops: use ops_dot)")
    colors, collapse = group_colors(analysis), _Collapse(analysis, layer)
    graph = _digraph(view, analysis, "TB" if view == "modules" else "LR")
    owners: dict[str, list[Entry]] = {}  # node key -> the members it draws
    labels: dict[str, str] = {}
    for group in analysis.groups:
        for member in group.members:
            key, labels[key] = collapse.owner(member.module)
            owners.setdefault(key, []).append((group, member))
    ids = {key: f"m{i}" for i, key in enumerate(owners)}
    items: list[Item] = []
    for key, entries in owners.items():
        label, clusters = labels[key], collapse.clusters(labels[key])
        if view == "groups":
            attrs = {"shape": "box", "style": "rounded", "label": _text(label)}
            items.append(((), ids[key], attrs))
        elif key.startswith("run:"):
            owned = {g.id for g, _ in entries if _keys(collapse, g) == [key]}
            items.append(((), ids[key], _run_node(label, entries, owned, colors)))
        else:
            short = label[len(clusters[-1]) + 1 :] if clusters and label != clusters[-1] else label
            items.append((clusters, ids[key], _module_node(short, entries, colors)))
    _emit(graph, items)
    for number, group in enumerate(analysis.groups):
        keys = _keys(collapse, group)
        if view == "modules":
            for a, b in itertools.pairwise(keys):
                graph.edge(ids[a], ids[b], **_edge(group, colors))
            continue
        graph.node(f"g{number}", **_group_node(group, colors))
        for key in keys:
            members = [m for m in group.members if collapse.owner(m.module)[0] == key]
            text = _member_text(members[0]).split()[0] if len(members) == 1 else None
            tip = "\n".join(f"{m.param}[{m.dim}] {m.layout}" for m in members)
            attrs = {"label": _text(text or f"{len(members)} params"), "labeltooltip": _text(tip)}
            graph.edge(f"g{number}", ids[key], **_edge(group, colors, **attrs))
    if view == "modules":
        _legend(graph, analysis, colors)
    return graph.source


def _keys(collapse: _Collapse, group: Group) -> list[str]:
    """The nodes drawing a group's members, in member (model) order."""
    return list(dict.fromkeys(collapse.owner(m.module)[0] for m in group.members))


def ops_dot(model: nn.Module, analysis: Analysis, layer: int | str = 0, inputs: Any = None) -> str:
    """DOT source of the aten ops captured inside one block (``layer``: index into
    ``analysis.blocks``, a block name, or any module path). ``inputs`` default to
    the ones the analysis used, else to ones derived from the model's config."""
    is_path = isinstance(layer, str) and layer not in {b.name for b in analysis.blocks}
    prefix = layer if is_path else pick_block(analysis, layer).name
    if inputs is None:
        inputs = analysis.inputs if any(analysis.inputs) else example_inputs(model)
    captured = capture(model, *normalise_inputs(inputs))
    inside = [n for n in captured.graph.nodes if n.op == "call_function"]
    inside = [n for n in inside if _within(captured.module_of(n), prefix)]
    inside = [n for n in inside if not _opname(n).startswith("_assert")]  # metadata checks
    if not inside:
        raise InputError(f"no captured ops ran inside {prefix!r}")
    graph = _digraph("ops", analysis, "TB", label=_text(f"aten ops of {prefix}"), labelloc="t")
    items: list[Item] = []
    outside: dict[fx.Node, str] = {}  # values read from outside the block -> node id
    for node in inside:
        module = captured.module_of(node)
        child = module[len(prefix) + 1 :].split(".")[0] if module != prefix else ""
        label, tip = f"{_opname(node)}\n{_value_shape(node)}", f"{node.target} in {module}"
        attrs = {"label": _text(label), "shape": "box", "style": "rounded", "tooltip": _text(tip)}
        items.append(((f"{prefix}.{child}",) if child else (), node.name, attrs))
        for source in node.all_input_nodes:
            if source not in inside and source not in outside:
                outside[source] = f"x{len(outside)}"
                items.append(((), outside[source], _source(source, captured, prefix, analysis)))
    _emit(graph, items)
    for node in inside:
        for source in node.all_input_nodes:
            graph.edge(outside.get(source, source.name), node.name)
        if any(user not in inside for user in node.users):
            graph.edge(node.name, "exit")
    graph.node("exit", label=_text("rest of the model"), shape="plaintext", fontcolor="#757575")
    return graph.source


def _opname(node: fx.Node) -> str:
    """``linear`` for ``aten.linear.default``; the name of any other callable."""
    name = getattr(node.target, "__name__", None) or str(node.target)
    return name.split(".")[0] if hasattr(node.target, "_schema") else name


def _value_shape(node: fx.Node) -> str:
    value = node.meta.get("val")
    values = value if isinstance(value, (list, tuple)) else [value]
    return "; ".join("x".join(map(str, v.shape)) for v in values if hasattr(v, "shape"))


def _source(node: fx.Node, captured: Capture, prefix: str, analysis: Analysis) -> dict[str, Any]:
    """A value the block reads from outside: a parameter (striped with its groups'
    colours) or another op's output (grey)."""
    name = captured.params.get(node.name) or captured.buffers.get(node.name)
    if name is None:
        where = captured.module_of(node) or ("input" if node.op == "placeholder" else "model")
        label = _text(f"{node.name}\n{where}  {_value_shape(node)}")
        return {"label": label, "shape": "ellipse", "color": "#9e9e9e", "fontcolor": "#616161"}
    groups = [g for g in analysis.groups if any(name in (m.param, *m.aliases) for m in g.members)]
    tip = "\n".join(g.id + (" (frozen)" if g.frozen else "") for g in groups) or "in no group"
    colors = ":".join(group_colors(analysis)[g.id] for g in groups)
    short = name[len(prefix) + 1 :] if name.startswith(prefix + ".") else name
    label = _text(f"{short}\n{_value_shape(node)}")
    attrs = {"label": label, "shape": "box", "tooltip": _text(tip), "fillcolor": colors}
    return {**attrs, "style": "filled,striped" if groups else "solid"}
