"""A self-contained, interactive HTML report of an analysis.

One file that opens offline anywhere (attach it to an issue, keep it with a
checkpoint): all style and script are inline, nothing is fetched, no fonts or
CDNs. The analysis is embedded as JSON in a ``<script type="application/json">``
tag and drawn by plain JavaScript, which inserts every name and reason as text
(``textContent``), never as markup; the JSON escapes ``<``, ``>`` and ``&`` so
no group id can close the tag. The page shows the groups in a sortable,
filterable table; clicking one lists its members (with before/after shapes when
a pruned analysis is given, matched by parameter name through the removed
blocks: after ``model.layers.3`` goes, the original ``model.layers.4`` is the
cut model's ``model.layers.3``) and its scores; then the repeated blocks,
residual and removable.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence

from surgeon.analyzers.analysis import Analysis
from surgeon.errors import InputError
from surgeon.rewriters.depth import renumbered
from surgeon.viz import group_colors, units_text

__all__ = ["html_report"]


def html_report(
    analysis: Analysis,
    pruned_analysis: Analysis | None = None,
    scores: Mapping[str, Sequence[float]] | None = None,
    removed_blocks: Sequence[str] = (),
) -> str:
    """The report as one HTML document. ``pruned_analysis`` (the analysis of the
    cut model) adds units and shapes after the cut; ``removed_blocks`` (the
    plan's ``remove_blocks``) says which original blocks it lacks, so later
    blocks are matched under their new numbers; ``scores`` maps group ids to
    one importance value per unit, drawn as a bar chart per group."""
    rename = renumbered(removed_blocks)
    data = _payload(analysis, pruned_analysis, _checked(analysis, scores or {}), rename)
    blob = json.dumps(data, allow_nan=False, separators=(",", ":"))
    blob = blob.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    title = html.escape(f"fx-surgeon: {analysis.model_class}")
    parts = {"TITLE": title, "STYLE": _STYLE, "SCRIPT": _SCRIPT, "DATA": blob}
    return re.sub(r"@@(TITLE|STYLE|SCRIPT|DATA)@@", lambda m: parts[m[1]], _PAGE)


def _checked(analysis: Analysis, scores: Mapping[str, Sequence[float]]) -> dict[str, list]:
    """Scores as plain floats, one per unit; NaN and infinities become null."""
    sizes = {group.id: group.size for group in analysis.groups}
    unknown = sorted(set(scores) - set(sizes))
    if unknown:
        raise InputError(f"scores given for unknown groups: {', '.join(map(repr, unknown))}")
    checked = {}
    for group_id, values in scores.items():
        floats = [float(v) for v in values]
        if len(floats) != sizes[group_id]:
            raise InputError(
                f"group {group_id!r} has {sizes[group_id]} units but {len(floats)} scores"
            )
        checked[group_id] = [v if math.isfinite(v) else None for v in floats]
    return checked


def _param_count(analysis: Analysis) -> int:
    members = [m for group in analysis.groups for m in group.members if not m.buffer]
    return sum({m.param: math.prod(m.shape) for m in members}.values())


def _renamed_group(group_id: str, rename: Callable[[str], str | None]) -> str | None:
    kind, at, module = group_id.partition("@")
    if not at:
        return group_id
    module = rename(module)
    return None if module is None else f"{kind}@{module}"


def _payload(
    analysis: Analysis,
    pruned: Analysis | None,
    scores: dict[str, list],
    rename: Callable[[str], str | None],
) -> dict:
    """The analysis as plain data (``Group.to_dict`` plus what the page shows)."""
    colors = group_colors(analysis)
    shapes = {m.param: list(m.shape) for g in pruned.groups for m in g.members} if pruned else {}
    sizes = {group.id: group.size for group in pruned.groups} if pruned else {}
    groups = []
    for group in analysis.groups:
        entry = group.to_dict()
        for member, original in zip(entry["members"], group.members, strict=True):
            after = shapes.get(rename(original.param) or "")
            member.update(layout=str(original.layout), after=after)
        after = sizes.get(_renamed_group(group.id, rename) or "", 0) if pruned else None
        entry.update(units=units_text(group), color=colors[group.id], after=after)
        groups.append({**entry, "scores": scores.get(group.id)})
    after = {"params": _param_count(pruned), "blocks": len(pruned.blocks)} if pruned else None
    blocks = [block.to_dict() for block in analysis.blocks]
    facts = {"model": analysis.model_class, "capture": analysis.capture_method, "after": after}
    facts.update(nodes=analysis.node_count, params=_param_count(analysis), groups=groups)
    return {**facts, "blocks": blocks}


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@@TITLE@@</title>
<style>@@STYLE@@</style></head>
<body>
<header><h1 id="model"></h1><div id="stats"></div></header>
<section>
<div class="controls">
<input id="filter" type="search" placeholder="filter: group, kind, parameter, reason">
<select id="kind"><option value="">all kinds</option></select>
<label><input id="hide-frozen" type="checkbox"> hide frozen</label>
<span id="shown"></span><span class="hint">click a group for its members</span>
</div>
<table id="groups"><thead><tr id="heads"></tr></thead><tbody id="group-rows"></tbody></table>
</section>
<section><h2>Repeated blocks</h2>
<table id="blocks"><thead><tr><th>block</th><th>residual</th><th>removable</th><th>reason</th>
</tr></thead><tbody id="block-rows"></tbody></table></section>
<noscript>This report is drawn by JavaScript; its data is in the surgeon-data element.</noscript>
<script type="application/json" id="surgeon-data">@@DATA@@</script>
<script>@@SCRIPT@@</script>
</body></html>
"""

_STYLE = """
:root { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
body { margin: 0; color: #212121; background: #fafafa; }
header { padding: 14px 24px 10px; background: #263238; color: #fff; }
h1 { margin: 0 0 6px; font-size: 20px; } h2 { font-size: 15px; margin: 18px 0 6px; }
#stats span { display: inline-block; margin: 0 14px 0 0; color: #cfd8dc; }
#stats b { color: #fff; font-weight: 600; }
section { padding: 0 24px; }
.controls { display: flex; gap: 12px; align-items: center; padding: 12px 0 8px; }
#filter { width: 300px; padding: 4px 8px; }
.hint, #shown { color: #757575; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border-bottom: 1px solid #e0e0e0; padding: 4px 8px; text-align: left;
  vertical-align: top; }
th { background: #eceff1; font-weight: 600; white-space: nowrap; }
#heads th { cursor: pointer; user-select: none; }
#heads th.sorted::after { content: " \\25B4"; } #heads th.desc::after { content: " \\25BE"; }
tr.group { cursor: pointer; } tr.group:hover { background: #f5f9ff; }
tr.open { background: #e8f1fb; }
tr.frozen td { color: #757575; } tr.frozen .swatch { outline: 1px dashed #757575; }
code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; }
.swatch { display: inline-block; width: 11px; height: 11px; margin-right: 7px;
  border-radius: 2px; vertical-align: -1px; }
.kind { padding: 1px 6px; border-radius: 8px; background: #eceff1; font-size: 12px; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.cut { color: #c62828; font-weight: 600; }
.reason { max-width: 300px; font-size: 12px; overflow-wrap: anywhere; }
.nowrap { white-space: nowrap; }
.clamp { display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical;
  overflow: hidden; }
.no { color: #c62828; } .yes { color: #2e7d32; }
td.detail { background: #f7f9fb; padding: 8px 16px 12px 34px; }
td.detail table { width: auto; } td.detail th, td.detail td { padding: 3px 10px; }
.charts { display: flex; gap: 20px; align-items: end; margin-top: 8px; color: #616161; }
canvas { display: block; }
"""

_SCRIPT = r"""
"use strict";
const data = JSON.parse(document.getElementById("surgeon-data").textContent);
const byId = (id) => document.getElementById(id);
const pruned = data.after !== null, hasScores = data.groups.some((g) => g.scores);
const state = { key: null, desc: false, open: new Set() };
const fmt = (n) => (n === null || n === undefined ? "" : Number(n).toLocaleString("en-US"));
const shape = (s) => (s ? s.join(" x ") : "removed");
const clamp = (...parts) => el("div", { class: "clamp" }, ...parts);
const yesNo = (ok) => el("span", { class: ok ? "yes" : "no" }, ok ? "yes" : "no");

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;  // strings become text nodes: names are never parsed as markup
}

function stats(values) {
  const finite = values.filter((v) => v !== null);
  let lo = Infinity, hi = -Infinity, sum = 0;
  for (const v of finite) { lo = Math.min(lo, v); hi = Math.max(hi, v); sum += v; }
  const mean = finite.length ? sum / finite.length : null, p = (x) => x.toPrecision(3);
  const bad = values.length - finite.length;
  const text = `${values.length} units: min ${p(lo)}, mean ${mean === null ? "-" : p(mean)}, ` +
    `max ${p(hi)}` + (bad ? `, ${bad} not finite` : "");
  return { finite, lo, hi, mean, text };
}

function chart(values, width, height, sorted) {
  const s = stats(values), ratio = window.devicePixelRatio || 1;
  const canvas = el("canvas", { width: width * ratio, height: height * ratio });
  canvas.style.width = width + "px"; canvas.style.height = height + "px";
  canvas.title = s.text + (sorted ? " (sorted)" : " (in unit order)");
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio); ctx.fillStyle = "#eceff1"; ctx.fillRect(0, 0, width, height);
  const list = sorted ? [...s.finite].sort((a, b) => b - a) : values;
  const lo = Math.min(0, s.lo), span = Math.max(0, s.hi) - lo || 1, step = width / list.length;
  ctx.fillStyle = "#546e7a";
  list.forEach((v, i) => {
    if (v === null) return;
    const h = Math.max(1, ((v - lo) / span) * height);
    ctx.fillRect(i * step, height - h, Math.max(step - (step > 3 ? 1 : 0), 0.5), h);
  });
  return canvas;
}

const columns = [
  { label: "group", value: (g) => g.id, cell: (g) => el("td", { class: "nowrap" },
    el("span", { class: "swatch", style: `background:${g.color}` }), el("code", {}, g.id)) },
  { label: "kind", value: (g) => g.kind,
    cell: (g) => el("td", {}, el("span", { class: "kind" }, g.kind)) },
  { label: "units", value: (g) => g.size,
    cell: (g) => el("td", { class: "num", title: `${g.size} units` }, g.units) },
  pruned && { label: "after", value: (g) => g.after, cell: (g) => el("td",
    { class: g.after < g.size ? "num cut" : "num" }, g.after ? String(g.after) : "removed") },
  { label: "params covered", value: (g) => g.params_covered,
    cell: (g) => el("td", { class: "num" }, fmt(g.params_covered)) },
  hasScores && { label: "scores", value: (g) => (g.scores ? stats(g.scores).mean : -Infinity),
    cell: (g) => el("td", {}, g.scores && chart(g.scores, 120, 18, false)) },
  { label: "frozen", value: (g) => g.frozen || "",
    cell: (g) => el("td", { class: "reason", title: g.frozen }, clamp(g.frozen || "")) },
  { label: "mask-equivalent", value: (g) => (g.mask_equivalent ? 1 : 0), cell: (g) => el("td",
    { class: "reason", title: g.notes.join("\n") || null }, clamp(yesNo(g.mask_equivalent),
      g.notes.map((n) => "; " + n).join(""))) },
].filter(Boolean);

function details(g) {
  const heads = ["parameter", "dim", "layout", pruned ? "shape before" : "shape"];
  heads.push(...(pruned ? ["after"] : []), "aliases");
  const rows = g.members.map((m) => el("tr", {}, el("td", {}, el("code", {}, m.param)),
    el("td", { class: "num" }, m.dim), el("td", {}, el("code", {}, m.layout)),
    el("td", { class: "num" }, shape(m.shape)),
    pruned && el("td", { class: shape(m.after) === shape(m.shape) ? "num" : "num cut" },
      shape(m.after)),
    el("td", {}, (m.aliases || []).join(", "))));
  const head = el("tr", {}, ...heads.map((h) => el("th", {}, h)));
  const table = el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
  const scores = g.scores && el("div", { class: "charts" }, chart(g.scores, 420, 44, true),
    el("span", {}, stats(g.scores).text + ", sorted high to low"));
  return el("tr", { class: "details" }, el("td", { class: "detail", colspan: columns.length },
    g.frozen && el("p", {}, "frozen: " + g.frozen), ...g.notes.map((n) => el("p", {}, n)),
    table, scores));
}

function matches(g, text, kind, hideFrozen) {
  if ((kind && g.kind !== kind) || (hideFrozen && g.frozen)) return false;
  const haystack = [g.id, g.kind, g.frozen || "", ...g.notes, ...g.members.map((m) => m.param)];
  return haystack.join("\n").toLowerCase().includes(text);
}

function compare(x, y) {
  return typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(y);
}

function drawGroups() {
  const text = byId("filter").value.trim().toLowerCase(), kind = byId("kind").value;
  let shown = data.groups.filter((g) => matches(g, text, kind, byId("hide-frozen").checked));
  if (state.key !== null) {
    const value = columns[state.key].value, sign = state.desc ? -1 : 1;
    shown = [...shown].sort((a, b) => sign * compare(value(a), value(b)));
  }
  const body = byId("group-rows");
  body.replaceChildren();
  for (const g of shown) {
    const open = state.open.has(g.id), toggle = () => {
      if (open) state.open.delete(g.id); else state.open.add(g.id);
      drawGroups();
    };
    const css = "group" + (g.frozen ? " frozen" : "") + (open ? " open" : "");
    body.append(el("tr", { class: css, onclick: toggle }, ...columns.map((c) => c.cell(g))));
    if (open) body.append(details(g));
  }
  byId("shown").textContent = `${shown.length} of ${data.groups.length} groups`;
  [...byId("heads").children].forEach((th, i) => {
    th.className = i === state.key ? (state.desc ? "sorted desc" : "sorted") : "";
  });
}

function init() {
  const prunable = data.groups.filter((g) => !g.frozen).length, blocks = data.blocks;
  const params = pruned ? `${fmt(data.params)} \u2192 ${fmt(data.after.params)}` : fmt(data.params);
  const facts = [["prunable groups", prunable], ["frozen", data.groups.length - prunable],
    ["repeated blocks", pruned ? `${blocks.length} \u2192 ${data.after.blocks}` : blocks.length],
    ["removable", blocks.filter((b) => b.removable).length], ["parameters in groups", params],
    ["captured by", `${data.capture}, ${fmt(data.nodes)} nodes`]];
  byId("model").textContent = data.model;
  byId("stats").append(...facts.map(([k, v]) => el("span", {}, k + ": ", el("b", {}, String(v)))));
  byId("heads").append(...columns.map((c, i) => el("th", { onclick: () => {
    state.desc = state.key === i ? !state.desc : false;
    state.key = i;
    drawGroups();
  } }, c.label)));
  const kinds = [...new Set(data.groups.map((g) => g.kind))];
  byId("kind").append(...kinds.map((k) => el("option", { value: k }, k)));
  for (const id of ["filter", "kind", "hide-frozen"]) byId(id).oninput = drawGroups;
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (data.groups.some((g) => g.id === wanted)) state.open.add(wanted);
  byId("block-rows").append(...blocks.map((b) => el("tr", {}, el("td", {}, el("code", {}, b.name)),
    el("td", {}, yesNo(b.residual)), el("td", {}, yesNo(b.removable)),
    el("td", { class: "reason" }, b.reason))));
  if (!blocks.length) byId("block-rows").append(el("tr", {}, el("td", { colspan: 4 }, "none")));
  drawGroups();
}

init();
"""
