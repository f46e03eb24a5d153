"""Analysis at scale: time and peak memory of ``surgeon.analyze`` on Llama-3 shapes.

Measures, each run in a fresh subprocess so that peak RSS (``ru_maxrss``) is per run:

* Llama-3-8B and Llama-3-70B shapes built on the meta device: construction time,
  ``surgeon.analyze`` time, end-to-end time (construction + analysis), peak RSS,
  graph nodes, groups, prunable groups and groups per kind.
* Torch-Pruning 1.6.1's ``DependencyGraph`` (build + ``get_all_groups``) on the same
  8B meta model, and both tools on a real-weight model with Llama-3-8B widths but
  4 layers (CPU, bf16 by default), since the full 8B in fp32 (32 GB) does not fit
  on a 24 GB machine.

It is a benchmark, not a test: it reports numbers and checks no thresholds.

Run (Torch-Pruning comes from the ``bench`` extra, or
``pip install -c constraints.txt torch-pruning==1.6.1``)::

    python bench/analysis_scale.py           # print the markdown table
    python bench/analysis_scale.py --write   # also rewrite the section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

from doc_sections import replace_section
from environment import machine, versions

from surgeon.shapes import LLAMA3_8B, LLAMA3_70B

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION = "## Analysis at scale"
GOAL = "70B in under 20 s end to end with under 1.5 GB peak RSS on a 2-core CPU machine"
SHAPES = {
    "Llama-3-8B": LLAMA3_8B,
    "Llama-3-70B": LLAMA3_70B,
    "Llama-3-8B widths, 4 layers": dict(LLAMA3_8B, num_hidden_layers=4),
}
# run id -> (shape, tool, device)
RUNS = {
    "8b-surgeon-meta": ("Llama-3-8B", "surgeon", "meta"),
    "70b-surgeon-meta": ("Llama-3-70B", "surgeon", "meta"),
    "8b-tp-meta": ("Llama-3-8B", "torch-pruning", "meta"),
    "8b4l-surgeon-cpu": ("Llama-3-8B widths, 4 layers", "surgeon", "cpu"),
    "8b4l-tp-cpu": ("Llama-3-8B widths, 4 layers", "torch-pruning", "cpu"),
}
SEQ_LEN = 8


def log(msg: str) -> None:
    print(f"[analysis_scale] {msg}", file=sys.stderr, flush=True)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def short_error(exc: BaseException) -> str:
    """The exception's first line and the innermost frame outside torch itself."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/torch/" not in f.filename]
    where = (
        f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} {frames[-1].name})"
        if frames
        else ""
    )
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}: {first}{where}"


def run_one(run_id: str, dtype: str) -> dict:
    """Body of a child process: construct, analyse, measure."""
    shape, tool, device = RUNS[run_id]
    t0 = time.perf_counter()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import surgeon

    result = {
        "run": run_id,
        "shape": shape,
        "tool": tool,
        "device": device,
        "import_s": time.perf_counter() - t0,
    }
    if device != "meta":
        torch.set_default_dtype(getattr(torch, dtype))
        result["dtype"] = dtype
    log(f"{run_id}: constructing {shape} on {device}")
    t1 = time.perf_counter()
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**SHAPES[shape]))
    result["construct_s"] = time.perf_counter() - t1
    log(f"{run_id}: constructed in {result['construct_s']:.2f} s; running {tool}")
    t2 = time.perf_counter()
    try:
        if tool == "surgeon":
            analysis = surgeon.analyze(model)
            result.update(
                nodes=analysis.node_count,
                groups=len(analysis.groups),
                prunable=len(analysis.prunable),
                kinds=dict(Counter(str(g.kind) for g in analysis.groups)),
            )
        else:
            import torch_pruning as tp

            ids = torch.zeros((1, SEQ_LEN), dtype=torch.long, device=device)
            # The minimal adaptation to a HF causal LM: no KV cache, trace from the logits.
            dg = tp.DependencyGraph().build_dependency(
                model,
                example_inputs={"input_ids": ids, "use_cache": False},
                output_transform=lambda out: out.logits,
                verbose=False,
            )
            result["build_s"] = time.perf_counter() - t2
            groups = list(dg.get_all_groups())
            result.update(nodes=len(dg.module2node), groups=len(groups))
    except Exception as exc:  # reported in the table, traceback on stderr
        traceback.print_exc()
        result["error"] = short_error(exc)
    result["analysis_s"] = time.perf_counter() - t2
    result["end_to_end_s"] = result["construct_s"] + result["analysis_s"]
    result["peak_rss_gb"] = peak_rss_gb()
    return result


def spawn(run_id: str, dtype: str, timeout: float) -> dict:
    shape, tool, device = RUNS[run_id]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", run_id, "--dtype", dtype]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {
            "run": run_id,
            "shape": shape,
            "tool": tool,
            "device": device,
            "error": f"no answer within {timeout:.0f} s",
        }
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if lines:
        return dict(json.loads(lines[-1][len("RESULT ") :]), process_s=time.perf_counter() - start)
    return {
        "run": run_id,
        "shape": shape,
        "tool": tool,
        "device": device,
        "error": f"child exited with status {proc.returncode} and no result",
    }


def fmt(value, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def table(results: list[dict]) -> str:
    head = (
        "| shape | tool | weights | construct s | analysis s | end to end s | process s "
        "| peak RSS GB | graph nodes | groups | prunable | groups by kind |"
    )
    rows = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in results:
        weights = "meta" if r["device"] == "meta" else f"{r['device']}, {r.get('dtype', '?')}"
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(r.get("kinds", {}).items()))
        if "error" in r:
            kinds = f"**failed:** {r['error']}".replace("|", "\\|")
        rows.append(
            f"| {r['shape']} | {r['tool']} | {weights} | {fmt(r.get('construct_s'))} "
            f"| {fmt(r.get('analysis_s'))} | {fmt(r.get('end_to_end_s'))} "
            f"| {fmt(r.get('process_s'))} | {fmt(r.get('peak_rss_gb'))} "
            f"| {fmt(r.get('nodes'), 'd')} "
            f"| {fmt(r.get('groups'), 'd')} | {fmt(r.get('prunable'), 'd')} | {kinds or '—'} |"
        )
    return "\n".join(rows)


def goal_line(results: list[dict]) -> str:
    r = next((r for r in results if r["run"] == "70b-surgeon-meta"), None)
    if r is None:
        return f"Goal: {GOAL}. The 70B run was not part of this invocation."
    if "error" in r:
        return f"Goal: {GOAL}. Measured: the 70B run failed ({r['error']}): goal not met."
    time_ok, rss_ok = r["end_to_end_s"] < 20, r["peak_rss_gb"] < 1.5
    verdict = (
        "met"
        if time_ok and rss_ok
        else "not met ("
        + ", ".join(n for n, ok in (("time", time_ok), ("memory", rss_ok)) if not ok)
        + " over the goal)"
    )
    return (
        f"Goal: {GOAL}. Measured here: {r['end_to_end_s']:.1f} s end to end "
        f"({r['analysis_s']:.1f} s of it analysis; {r['process_s']:.1f} s for the whole "
        f"process with Python start-up and imports), {r['peak_rss_gb']:.2f} GB peak RSS: "
        f"{verdict}."
    )


def section(results: list[dict], command: str, total_s: float) -> str:
    return f"""{SECTION}

{goal_line(results)}

{table(results)}

- Each row is a fresh Python process. *construct* builds `LlamaForCausalLM(config)` (under
  `torch.device("meta")` for meta rows); *analysis* is `surgeon.analyze(model)`, or for
  Torch-Pruning `DependencyGraph().build_dependency(...)` plus `list(dg.get_all_groups())`;
  *end to end* is the two together; *process* is the child's wall time as the parent saw
  it, Python start-up and the imports of torch, transformers and surgeon included.
- Peak RSS is `ru_maxrss` of the child at its end (1 GB = 10^9 bytes), so it includes
  the imports of torch and transformers and, on real-weight rows, the weights.
- Graph nodes are FX nodes of the exported graph for surgeon; for Torch-Pruning they are
  the nodes of its dependency graph (`dg.module2node`), not the same unit.
- Torch-Pruning is given `{{"input_ids": ids, "use_cache": False}}` and
  `output_transform=lambda out: out.logits` ({SEQ_LEN} tokens), no other patch; its groups
  are `get_all_groups()` with default arguments (Linear/Conv roots, nothing ignored).
- The full 8B shape with real weights is not run: fp32 needs 32 GB, more than this machine.
- Machine: {machine()}.
- Versions: {versions("torch", "transformers", "torch-pruning")}.
- Command: `{command}` (whole script: {total_s:.0f} s wall).
"""


def write_doc(text: str) -> None:
    replace_section(DOC, SECTION, text)
    log(f"wrote {DOC}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write", action="store_true", help=f"replace the '{SECTION}' section of {DOC.name}"
    )
    parser.add_argument("--one", choices=sorted(RUNS), help="(internal) run one measurement")
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=list(RUNS),
        default=list(RUNS),
        help="which runs to do (default: all)",
    )
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float32"],
        help="dtype of the real-weight model (default: bfloat16)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds each run may take (default: 600)"
    )
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.dtype)), flush=True)
        return
    start = time.perf_counter()
    results = []
    for i, run_id in enumerate(args.runs, 1):
        log(f"[{i}/{len(args.runs)}] {run_id} (fresh process, timeout {args.timeout:.0f} s)")
        t = time.perf_counter()
        results.append(spawn(run_id, args.dtype, args.timeout))
        log(f"[{i}/{len(args.runs)}] {run_id} done in {time.perf_counter() - t:.1f} s")
    total = time.perf_counter() - start
    command = " ".join(["python bench/analysis_scale.py", *sys.argv[1:]])
    print(table(results))
    print(f"\n{goal_line(results)}\nTotal: {total:.1f} s")
    if args.write:
        write_doc(section(results, command, total))


if __name__ == "__main__":
    main()
