"""Vision sweep: Torch-Pruning's torchvision list and twelve timm families,
``surgeon.prune(model, 0.3, criterion="magnitude", inputs=x)`` beside
Torch-Pruning 1.6.1 on each.

Needs its own environment (torchvision does not import beside the main
install's torch; see README, "Vision"):

    python -m venv /work/venv-vision
    /work/venv-vision/bin/pip install torch==2.14.1 torchvision==0.29.1
    /work/venv-vision/bin/pip install -e . --no-deps
    /work/venv-vision/bin/pip install transformers networkx graphviz safetensors tqdm \\
        accelerate timm torch-pruning==1.6.1
    /work/venv-vision/bin/python bench/vision_coverage.py            # run what the cache lacks
    /work/venv-vision/bin/python bench/vision_coverage.py --write    # ... and docs/coverage.md
    /work/venv-vision/bin/python bench/vision_coverage.py --only resnet18,swin_t --rerun

Each model and tool runs in its own process with a timeout, at most two at a
time (models marked big alone); rows are cached in
bench/results/vision_coverage.jsonl by model and tool. A model counts as
handled by fx-surgeon when ``prune`` returns a model that verifies against
the masked original, with a check that could see a wrong cut (``verify``'s
power: masking the removed units moves the outputs by more than 10x its
tolerance), and at least 25% of all parameters removed. Torch-Pruning has no
such check: a model counts as handled when its pruner runs (its own example's
ignored layers, channel ratio 0.3) and the pruned model runs with the
original's output shapes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vision_models import MODELS, VisionModel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "results" / "vision_coverage.jsonl"
TOOLS = ("surgeon", "tp")
RATIO = 0.3
ENOUGH = 0.25  # of all parameters
SECONDS = 1200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help="run one model (its key) in this process")
    parser.add_argument("--tool", choices=TOOLS, default="surgeon")
    parser.add_argument("--only", help="comma-separated model keys")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--rerun", action="store_true", help="ignore cached rows")
    parser.add_argument("--rerun-failed", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=SECONDS)
    parser.add_argument("--write", action="store_true", help="write docs/coverage.md's section")
    parser.add_argument("--no-run", action="store_true", help="only render the cached rows")
    args = parser.parse_args()
    if args.worker:
        spec = next(m for m in MODELS if m.key == args.worker)
        from vision_run import run_surgeon, run_tp

        row = (run_surgeon if args.tool == "surgeon" else run_tp)(spec, RATIO)
        print("ROW " + json.dumps(row))
        return
    only = set(args.only.split(",")) if args.only else None
    models = [m for m in MODELS if only is None or m.key in only]
    rows = _cached()
    todo = [
        (m, tool)
        for m in models
        for tool in args.tools.split(",")
        if args.rerun
        or (m.key, tool) not in rows
        or (args.rerun_failed and not rows[(m.key, tool)].get("handled"))
    ]
    if args.no_run:
        todo = []
    small = [t for t in todo if not t[0].big]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)  # no oversubscribed cores
    with ThreadPoolExecutor(args.jobs) as pool:
        for row in pool.map(lambda t: _run(*t, args.timeout, threads), small):
            _store(row)
    for spec, tool in [t for t in todo if t[0].big]:
        _store(_run(spec, tool, args.timeout, os.cpu_count() or 1))
    from vision_report import write_section

    text = write_section(_cached(), MODELS, write=args.write)
    print(text)


def _run(spec: VisionModel, tool: str, timeout: float, threads: int) -> dict:
    started = time.time()
    command = [sys.executable, __file__, "--worker", spec.key, "--tool", tool]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
        )
    except subprocess.TimeoutExpired:
        row = {"error": f"timeout: no answer within {timeout:.0f} s"}
    else:
        lines = [line for line in done.stdout.splitlines() if line.startswith("ROW ")]
        if lines:
            row = json.loads(lines[-1][4:])
        else:
            tail = [line for line in done.stderr.splitlines() if line.strip()][-3:]
            row = {"error": f"worker died (exit {done.returncode}): {' | '.join(tail)[:300]}"}
    row.update(model=spec.key, tool=tool, task=spec.task, seconds=round(time.time() - started, 1))
    row.setdefault("handled", False)
    print(
        f"{spec.key:40s} {tool:8s} handled={row['handled']!s:5s} "
        f"removed={row.get('removed', 0):.3f} {row.get('error', '')[:120]}",
        flush=True,
    )
    return row


def _cached() -> dict[tuple[str, str], dict]:
    rows = {}
    if CACHE.exists():
        for line in CACHE.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[(row["model"], row["tool"])] = row
    return rows


def _store(row: dict) -> None:
    rows = _cached()
    rows[(row["model"], row["tool"])] = row
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows.values()))


if __name__ == "__main__":
    main()
