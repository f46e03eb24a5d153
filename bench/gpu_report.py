"""Markdown for ``bench/gpu_speed.py``: tables, the issue's goals, the docs section."""

from __future__ import annotations

SECTION = "## GPU speed"


def _range(values: list[int]) -> str:
    distinct = sorted(set(values))
    if len(distinct) == 1:
        return str(distinct[0])
    return f"{distinct[0]}..{distinct[-1]} ({len(distinct)})"


def _latest(results: list[dict], key: str) -> list[dict]:
    """Per variant, the last row that measured ``key``; dense first, then by ratio."""
    rows = {r["variant"]["name"]: r for r in results if key in r}
    return sorted(
        rows.values(),
        key=lambda r: (r["variant"]["ratio"], not r["variant"]["name"].startswith("default")),
    )


def _reference(results: list[dict], row: dict, key: str) -> dict | None:
    """The dense row to compare ``row[key]`` with: from the same run when it has ``key``."""
    dense = [r for r in results if r["variant"]["name"] == "dense" and key in r]
    same = [r for r in dense if r.get("run") == row.get("run")]
    return (same or dense or [None])[-1]


def report(results: list[dict]) -> str:
    """Two markdown tables: eager, and torch.compile where it was measured."""
    head = (
        "| shape | layers | MLP widths | KV heads | params | param ratio | FLOP ratio "
        "| prefill ms | prefill speedup | / FLOP ratio | decode b1 tok/s | b1 speedup "
        "| / param ratio | decode b16 tok/s | b16 speedup |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    tables = {"": [head], "_compiled": [head]}
    for suffix, rows in tables.items():
        prefill_key, b1_key = f"prefill{suffix}_ms", f"decode_b1{suffix}_tok_s"
        b16_key = f"decode_b16{suffix}_tok_s"
        for r in _latest(results, prefill_key):
            dense = _reference(results, r, prefill_key)
            if dense is None:  # no dense row measured this way: nothing to compare with
                continue
            params = dense["params"] / r["params"]
            flops = dense["prefill_flops"] / r["prefill_flops"]
            prefill = dense[prefill_key] / r[prefill_key]
            b1 = r[b1_key] / dense[b1_key]
            rows.append(
                f"| {r['variant']['name']} | {r['layers']} | {_range(r['mlp_widths'])} "
                f"| {_range(r['kv_heads'])} | {params_label(r['params'])} | {params:.2f}x "
                f"| {flops:.2f}x | {r[prefill_key]:.1f} | {prefill:.2f}x | {prefill / flops:.2f} "
                f"| {r[b1_key]:.0f} | {b1:.2f}x | {b1 / params:.2f} | {r[b16_key]:.0f} "
                f"| {r[b16_key] / dense[b16_key]:.2f}x |"
            )
    text = "Eager PyTorch (decode steps replayed as CUDA graphs):\n\n" + "\n".join(tables[""])
    if len(tables["_compiled"]) > 1:
        text += "\n\n`torch.compile` (inductor; decode steps replayed as CUDA graphs):\n\n"
        text += "\n".join(tables["_compiled"])
    return text


GOALS = {0.2: 0.9, 0.5: 0.85}  # prefill speedup / FLOP ratio, per ratio (the goal)
DECODE_GOAL = 0.9  # decode b1 speedup / param ratio


def goals(results: list[dict], prefix: str = "default") -> list[str]:
    """Whether ``prefix``-N rows meet the goals, eager and compiled, as sentences."""
    lines = []
    for ratio, prefill_goal in GOALS.items():
        name = f"{prefix}-{int(ratio * 100)}"
        for suffix, label in (("", "eager"), ("_compiled", "torch.compile")):
            rows = [
                r for r in results if r["variant"]["name"] == name and f"prefill{suffix}_ms" in r
            ]
            if not rows:
                continue
            r = rows[-1]
            dense = _reference(results, r, f"prefill{suffix}_ms")
            flops = dense["prefill_flops"] / r["prefill_flops"]
            params = dense["params"] / r["params"]
            prefill = dense[f"prefill{suffix}_ms"] / r[f"prefill{suffix}_ms"] / flops
            decode = r[f"decode_b1{suffix}_tok_s"] / dense[f"decode_b1{suffix}_tok_s"] / params
            verdict = "met" if prefill >= prefill_goal and decode >= DECODE_GOAL else "NOT met"
            lines.append(
                f"- `{name}`, {label}: prefill {prefill:.2f} of the FLOP ratio (goal "
                f"{prefill_goal}), decode b1 {decode:.2f} of the parameter ratio (goal "
                f"{DECODE_GOAL}): {verdict}."
            )
    return lines


def _slowdown(results: list[dict], name: str) -> float:
    """How many times slower than dense the prefill of variant ``name`` ran."""
    row = next(r for r in _latest(results, "prefill_ms") if r["variant"]["name"] == name)
    return row["prefill_ms"] / _reference(results, row, "prefill_ms")["prefill_ms"]


def _decode_fixed_ms(results: list[dict], name: str, suffix: str = "_compiled") -> float:
    """Per-token decode time that does not scale with the weights read, from a line
    through dense and ``name``: ms = fixed + k x (parameters less the embedding)."""
    key = f"decode_b1{suffix}_tok_s"
    row = next(r for r in _latest(results, key) if r["variant"]["name"] == name)
    dense = _reference(results, row, key)
    read = {id(r): r["params"] - r["embedding"] for r in (row, dense)}
    ms = {id(r): 1e3 / r[key] for r in (row, dense)}
    slope = (ms[id(dense)] - ms[id(row)]) / (read[id(dense)] - read[id(row)])
    return ms[id(dense)] - slope * read[id(dense)]


def section(results: list[dict], command: str) -> str:
    dense = next(r for r in results if r["variant"]["name"] == "dense")
    return f"""{SECTION}

How fast pruned shapes run. A Llama-3-8B-shaped model (random bf16 weights, sdpa
attention) on one {dense["device"]}, torch {dense["torch"]}, transformers
{dense["transformers"]}. Prefill: one forward over 1 x 2048 tokens computing the last
logits only. Decode: 128 greedy tokens after a 128-token prompt with a static KV cache,
each step (forward, argmax, position update) replayed as a CUDA graph; tokens per
second. CUDA events, warm-up, medians of 10. FLOP ratio: the prefill's matrix-product
FLOPs (linear layers and causal attention) dense over pruned; param ratio: all
parameters, dense over pruned. Scores are `magnitude` (weight-only): speed depends on
the shapes, not on which units are kept.

Shapes (20% or 50% of the block parameters removed): `default` is `PlanOptions`'
defaults (MLP channels, global allocation, `round_to=None`, which keeps multiples of
64 here); `uniform-rN` / `global-rN` set the allocation and `round_to=N`; `tp` keeps
(1 - ratio) of every MLP's channels, as Torch-Pruning's per-layer ratio leaves them;
`heads` cuts KV groups and MLP channels; `layers` removes whole layers for half the
ratio (late-middle ones, where ShortGPT's block influence usually points) and MLP
channels elsewhere for the rest; `layers-quarter` does so for a quarter of the ratio.

{report(results)}

Goals (prefill at least 0.9x the FLOP ratio at 20% and 0.85x at 50%, eager; decode at
batch 1 at least 0.9x the parameter ratio):

{chr(10).join(goals(results))}
{chr(10).join(goals(results, "layers"))}
{chr(10).join(goals(results, "layers-quarter"))}

- Shapes decide: widths that are not multiples of 8 (`round_to=1`, and Torch-Pruning's
  11469) made prefill {_slowdown(results, "uniform-r1-20"):.1f}x slower than dense at 20%
  and decode at batch 16 slower too;
  multiples of 8 ran as fast as multiples of 64, 128 or 256. So the planner's default
  `round_to=None` keeps each channel group's power-of-two alignment up to 64
  (`surgeon.planner.channel_step`); no default width is unaligned.
- At 50%, width cuts alone fall short of the goals: per-layer work that width does not
  shrink stays: RMSNorm, RoPE and residual adds in eager prefill, and kernel latency in
  batch-1 decode (with torch.compile, a line through the dense and `default-50` rows
  puts {_decode_fixed_ms(results, "default-50"):.1f} ms of each token's time outside
  the weights read). Removing whole layers removes it
  too (`layers` rows), but depth costs quality (the "recommended + whole layers" and
  ShortGPT rows of "Pruning quality" against the recommended width-only rows). So the
  default stays width-only and depth is the `layers=` option, which counts toward the
  target.
- Command: `{command}`, several runs on lent H100s, merged in
  `bench/results/gpu_speed_h100.json` (each row is compared with the dense row of its
  own run); this section: `python bench/gpu_speed.py --report
  bench/results/gpu_speed_h100.json --write`.
"""


def params_label(params: int) -> str:
    return f"{params / 1e9:.2f}B" if params >= 1e8 else f"{params / 1e6:.1f}M"
