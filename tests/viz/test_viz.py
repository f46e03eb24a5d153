"""Pictures: the DOT views, rendering with Graphviz, and the HTML report as
headless Chromium draws it. Missing ``dot`` or ``chromium`` is a failure, not a
skip, so CI cannot pass without having looked at the pictures."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote

import pytest

import surgeon
from surgeon import Group, GroupKind, Layout, Level, Member
from surgeon.analyzers.analysis import Analysis
from surgeon.demo import demo_model
from surgeon.errors import InputError
from surgeon.viz import GraphvizNotFound, group_colors, html_report, ops_dot, render, to_dot

INSTALL = "run scripts/install-system-deps.sh (installs Debian's graphviz and chromium)"
WEIRD_ID = 'mlp@<b>"x"</b>&\'\\y'
WEIRD_REASON = 'it\'s </script><!-- "quoted" <tag> & C:\\dir\\'


def require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"'{program}' is not on PATH: {INSTALL}", pytrace=False)
    return path


@pytest.fixture(scope="module")
def model():
    return demo_model()


@pytest.fixture(scope="module")
def analysis(model):
    return surgeon.analyze(model)


@pytest.fixture(scope="module")
def pruned(model, analysis):
    """The analysis of the demo with the first half of every MLP kept."""
    keep = {g.id: list(range(g.size // 2)) for g in analysis.by_kind("mlp")}
    plan = surgeon.Plan.for_analysis(analysis, keep=keep, remove_blocks=())
    return surgeon.analyze(surgeon.apply(model, plan, analysis=analysis))


@pytest.fixture(scope="module")
def weird() -> Analysis:
    """Ids, module names and reasons with quotes, angle brackets and backslashes."""
    member = Member("fc.weight", 0, Layout("unit", 4, level="unit"), "", (4, 3))
    frozen = Member("head.weight", 1, Layout("unit", 4, level="unit"), "head", (2, 4))
    groups = (
        Group(WEIRD_ID, GroupKind.MLP, (Level("unit", 4),), (member,)),
        Group("channels@<head>", GroupKind.CHANNELS, (Level("unit", 4),), (frozen,), WEIRD_REASON),
    )
    return Analysis('Net<"x">', groups, (), {}, "export", 3)


def legend_colors(dot: str, analysis: Analysis) -> dict[str, str]:
    """Each group's colour as the legend of the modules view draws it."""
    found = {}
    for group in analysis.groups:
        cell = rf'BGCOLOR="(#[0-9a-f]{{6}})"[^>]*></TD><TD[^>]*>{re.escape(html.escape(group.id))}<'
        found[group.id] = re.search(cell, dot)[1]
    return found


def test_modules_view_shows_every_group_in_its_own_colour(analysis):
    dot = to_dot(analysis)
    assert len(analysis.groups) == 11
    colors = legend_colors(dot, analysis)
    assert colors == group_colors(analysis)
    assert len(set(colors.values())) == 11
    mlp = colors["mlp@model.layers.0.mlp"]  # its three members, and the edges between them
    assert len(re.findall(rf'<TD BGCOLOR="{mlp}">mlp</TD>', dot)) == 3
    assert len(re.findall(rf'color="{mlp}"', dot)) == 2


def test_repeated_blocks_collapse_around_the_expanded_layer(analysis):
    dot = to_dot(analysis)
    assert "model.layers.1-3 (x 3 layers)" in dot
    assert "3 attention, 3 mlp; shares hidden" in dot
    assert 'label="model.layers.0"' in dot and "label=self_attn" in dot
    assert "<B>q_proj</B>" in dot and "<B>down_proj</B>" in dot
    assert re.findall(r"(?<!@)model\.layers\.[123]\.", dot) == []  # only inside group ids
    middle = to_dot(analysis, layer=2)
    assert "model.layers.0-1 (x 2 layers)" in middle and "model.layers.3 (x 1 layer)" in middle
    assert to_dot(analysis, layer="model.layers.2") == middle
    with pytest.raises(InputError, match="model.layers.3"):
        to_dot(analysis, layer=4)


def test_frozen_groups_are_dashed_and_carry_their_reason(analysis):
    dot, groups = to_dot(analysis), to_dot(analysis, "groups")
    assert len(analysis.frozen) == 2
    for group in analysis.frozen:
        assert f"{group.kind.value} (frozen)" in dot
        assert f"frozen: {group.frozen}" in dot and f"frozen: {group.frozen}" in groups
    assert groups.count('style="filled,rounded,dashed"') == 2
    assert groups.count('style="filled,rounded"') == 9
    assert dot.count("style=dashed") == 0  # no edge joins the members of a frozen group here
    assert 'STYLE="dashed"' in dot


def test_groups_view_links_each_group_to_its_modules(analysis):
    dot = to_dot(analysis, "groups")
    assert len(re.findall(r"^\s*g\d+ \[", dot, flags=re.M)) == 11
    assert "<B>attention@model.layers.0.self_attn</B><BR/>attention: 2 kv x 4 q x 32 hd" in dot
    assert "3,295,488 params covered" in dot and "<I>not mask-equivalent</I>" in dot
    hidden = next(i for i, g in enumerate(analysis.groups) if g.id == "hidden")
    # embed, 9 modules of layer 0, the collapsed layers 1-3, model.norm, lm_head
    assert len(re.findall(rf"^\s*g{hidden} -> m\d+", dot, flags=re.M)) == 13
    assert 'label="27 params"' in dot  # hidden's members in the three collapsed layers


def test_ops_view_shows_the_aten_ops_of_one_layer(model, analysis):
    dot = ops_dot(model, analysis, layer=0)
    assert 'label="aten ops of model.layers.0"' in dot
    assert len(re.findall(r'label="linear\n', dot)) == 7  # q, k, v, o, gate, up, down
    assert "scaled_dot_product_attention" in dot or "matmul" in dot
    assert " in model.layers.1" not in dot and "self_attn.q_proj.weight" in dot
    mlp = ops_dot(model, analysis, layer="model.layers.0.mlp")
    assert len(re.findall(r'label="linear\n', mlp)) == 3 and "silu" in mlp


def test_graphviz_renders_svg_png_and_dot(analysis, model, tmp_path):
    require("dot")
    source = to_dot(analysis)
    svg = render(source, tmp_path / "modules.svg").read_text()
    assert svg.lstrip().startswith(("<?xml", "<svg")) and "</svg>" in svg
    text = "".join(ET.fromstring(svg).itertext())  # SVG writes '-' as &#45;
    assert "mlp@model.layers.0.mlp" in text and "model.layers.1-3 (x 3 layers)" in text
    assert render(to_dot(analysis, "groups"), tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    ops = render(ops_dot(model, analysis), tmp_path / "ops.svg").read_text()
    assert "scaled_dot_product_attention" in ops
    assert render(source, tmp_path / "m.dot").read_text() == source


def test_rendering_without_dot_names_the_executable_and_package(analysis, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GraphvizNotFound, match=r"'dot'.*Debian package 'graphviz'"):
        render(to_dot(analysis), tmp_path / "x.svg")
    assert render("digraph {}", tmp_path / "x.dot").read_text() == "digraph {}"
    with pytest.raises(InputError, match=r"\.svg, \.png"):
        render("digraph {}", tmp_path / "x.jpg")


def test_names_with_quotes_and_brackets_are_escaped_in_dot(weird, tmp_path):
    require("dot")
    for view in ("modules", "groups"):
        svg = render(to_dot(weird, view), tmp_path / f"{view}.svg").read_text()
        text = "".join(ET.fromstring(svg).itertext())
        assert WEIRD_ID in text and "channels@<head>" in text
        tooltips = [e.get("{http://www.w3.org/1999/xlink}title") for e in ET.fromstring(svg).iter()]
        assert any(t and WEIRD_REASON in t for t in tooltips)


def test_report_is_self_contained(analysis, pruned):
    page = html_report(analysis, pruned, {"hidden": [1.0] * 256})
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<script[^>]*\bsrc\b", page, flags=re.I)
    assert not re.search(r"<link\b[^>]*\bhref\b", page, flags=re.I)
    assert "@import" not in page and "url(" not in page
    assert '<tbody id="group-rows"></tbody>' in page  # rows come from the script


def test_report_embeds_the_data_as_escaped_json(weird):
    page = html_report(weird, scores={WEIRD_ID: [1.0, float("nan"), 3.0, float("inf")]})
    assert WEIRD_REASON not in page and "</b>" not in page and "<!--" not in page
    assert page.count("</script>") == 2
    blob = re.search(
        r'<script type="application/json" id="surgeon-data">(.*?)</script>', page, re.S
    )
    data = json.loads(blob[1])
    assert [g["id"] for g in data["groups"]] == [WEIRD_ID, "channels@<head>"]
    assert data["groups"][1]["frozen"] == WEIRD_REASON
    assert data["groups"][0]["scores"] == [1.0, None, 3.0, None]
    assert "<title>fx-surgeon: Net&lt;&quot;x&quot;&gt;</title>" in page


def test_report_refuses_scores_that_do_not_fit(analysis):
    with pytest.raises(InputError, match="unknown groups: 'nope'"):
        html_report(analysis, scores={"nope": [1.0]})
    with pytest.raises(InputError, match="has 688 units but 3 scores"):
        html_report(analysis, scores={"mlp@model.layers.0.mlp": [1.0, 2.0, 3.0]})


def chromium(tmp_path: Path, url: str, *flags: str) -> str:
    command = [
        require("chromium"),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        *flags,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def report_file(tmp_path, analysis, pruned) -> Path:
    scores = {g.id: [float(u % 7) for u in range(g.size)] for g in analysis.prunable}
    path = tmp_path / "report.html"
    path.write_text(html_report(analysis, pruned, scores))
    return path


def test_chromium_runs_the_report_and_lists_the_groups(analysis, pruned, tmp_path):
    path = report_file(tmp_path, analysis, pruned)
    url = f"{path.as_uri()}#{quote('mlp@model.layers.0.mlp', safe='')}"  # opens that group
    dom = chromium(tmp_path, url, "--dump-dom")
    body = re.search(r'<tbody id="group-rows">(.*?)</tbody></table>\s*</section>', dom, re.S)[1]
    rows = re.findall(r'<tr class="group[^"]*">.*?<code>([^<]*)</code>', body)
    assert rows == [g.id for g in analysis.groups]
    assert len(re.findall(r'<tr class="group frozen', body)) == 2
    assert body.count("<canvas") == 9 + 1  # one chart per scored group, one in the open group
    detail = body.split('<tr class="details">')[1].split('<tr class="group')[0]
    assert "model.layers.0.mlp.down_proj.weight" in detail and "256 x 688" in detail
    assert "256 x 344" in detail and "688 x 256" in detail and "344 x 256" in detail
    assert "parameters in groups: <b>3,295,488 \u2192 2,238,720</b>" in dom
    blocks = re.search(r'<tbody id="block-rows">(.*?)</tbody>', dom, re.S)[1]
    assert blocks.count("<tr>") == 4 and "model.layers.3" in blocks


def test_chromium_screenshots_the_report(analysis, pruned, tmp_path):
    path, shot = report_file(tmp_path, analysis, pruned), tmp_path / "report.png"
    chromium(tmp_path, path.as_uri(), f"--screenshot={shot}", "--window-size=1280,900")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 900)
    assert len(png) > 30_000  # a blank page of that size compresses to a few kB
