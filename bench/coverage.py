"""Coverage sweep: every transformers architecture, small, through every stage.

    python bench/coverage.py                 # run what the cache lacks, print the table
    python bench/coverage.py --write         # ... and write docs/coverage.md
    python bench/coverage.py --rerun-failed  # re-run rows that did not pass everything
    python bench/coverage.py --only llama,gpt2 --rerun
    python bench/coverage.py --slice         # the bounded slice CI runs (no cache)

Architectures come from transformers' auto mappings (bench/coverage_models.py,
one generic shrinking rule in bench/coverage_shrink.py); each runs in its own process with a timeout
(bench/coverage_stages.py), at most two at a time. Results are cached per
model in bench/results/coverage.jsonl, keyed by model type and the
transformers version, so a re-run only does what changed or was asked for.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import coverage_stages  # noqa: E402
from coverage_doc import (  # noqa: E402
    _transformers_version,
    applicable,
    buildable,
    failed,
    passes_all,
    render,
)
from coverage_models import Architecture, discover  # noqa: E402
from coverage_stages import STAGES  # noqa: E402
from doc_sections import replace_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "results" / "coverage.jsonl"
DOC = ROOT / "docs" / "coverage.md"
MODEL_SECONDS = 900
WORKERS = 2
# diverse and quick: dense GQA decoder, Conv1D decoder, encoder, encoder-decoder
# with relative bias, fused MoE, ViT, a CNN
SLICE = ("llama", "gpt2", "bert", "t5", "mixtral", "vit", "resnet")
FIRST = set(SLICE) | set(
    [
        "olmo2",
        "olmoe",
        "swin",
        "deepseek_v3",
        "bloom",
        "codegen",
        "gpt_bigcode",
        "gptj",
        "bart",
        "gpt_neo",
        "gpt_oss",
        "mamba",
        "qwen3_moe",
        "phi3",
        "falcon",
        "opt",
        "mistral",
        "qwen2",
        "qwen3",
        "gemma3_text",
        "gemma2",
        "gpt_neox",
        "roberta",
        "distilbert",
        "whisper",
        "clip_text_model",
        "convnext",
    ]
)
CODE = [""]  # HEAD when this process imported the library (children are forked from it)


def run_model(arch: Architecture, timeout: float = MODEL_SECONDS) -> dict:
    """Run every stage of ``arch`` in a child forked from this (warm) process;
    a row of outcomes. A hung or dead child leaves the stages it finished."""
    import multiprocessing
    import tempfile

    start = time.time()
    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        child = multiprocessing.get_context("fork").Process(
            target=coverage_stages.forked, args=(arch, log.name)
        )
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            code = None
        else:
            code = child.exitcode
        stdout = Path(log.name).read_text(errors="replace")
    tail = "\n".join(line for line in stdout.splitlines() if not line.startswith("@@ "))[-1500:]
    if code is None:
        tail = f"model timed out after {timeout:.0f} s\n" + tail
    stages = {}
    for line in stdout.splitlines():
        if line.startswith("@@ "):
            record = json.loads(line[3:])
            stages[record.pop("stage")] = record
    if "build" in stages and stages["build"]["status"] == "pass" and "analyze" in stages:
        for stage in STAGES:
            if stage not in stages and stages["analyze"]["status"] == "pass":
                status = "timeout" if code is None else "crash"
                stages[stage] = {
                    "status": status,
                    "reason": f"process ended (exit {code})",
                    "detail": tail,
                }
    elif "build" not in stages or ("analyze" not in stages and stages["build"]["status"] == "pass"):
        stages.setdefault("build", {"status": "pass", "reason": ""})
        stages["analyze"] = {
            "status": "timeout" if code is None else "crash",
            "reason": f"process ended (exit {code})",
            "detail": tail,
        }
    return {
        "model_type": arch.model_type,
        "class": arch.class_name,
        "task": arch.task,
        "transformers": _transformers_version(),
        "commit": CODE[0],
        "seconds": round(time.time() - start, 1),
        "stages": stages,
    }


def _commit() -> str:
    """HEAD when the row was run (the working tree may hold more)."""
    import subprocess

    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    return done.stdout.strip()


def _dirty() -> bool:
    """Uncommitted changes under the library's packages (others' work in progress)."""
    import subprocess

    done = subprocess.run(
        ["git", "status", "--porcelain", "--", "analyzers", "rewriters", "surgeon"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return bool(done.stdout.strip())


def load_cache() -> dict[str, dict]:
    rows = {}
    if CACHE.exists():
        for line in CACHE.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["model_type"]] = row
    return rows


def save_row(row: dict) -> None:
    """Write one row into the cache file as it is now on disk, so that two
    sweeps running side by side (a re-run beside a first run) keep each
    other's rows."""
    import fcntl
    import os

    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = load_cache()
        rows[row["model_type"]] = row
        lines = [json.dumps(rows[k], sort_keys=True) for k in sorted(rows)]
        partial = CACHE.with_suffix(".partial")
        partial.write_text("\n".join(lines) + "\n")
        os.replace(partial, CACHE)


def sweep(
    archs: list[Architecture],
    rows: dict[str, dict],
    todo: set[str],
    cache: bool,
    workers: int = WORKERS,
) -> dict[str, dict]:
    """Run the architectures named in ``todo``; rows update as they finish."""
    # the named causes and the slice first, then task heads, base models last
    # re-runs of failed rows first, then never-run rows; the named
    # causes and the slice first among each, base models last
    pending = sorted(
        (a for a in archs if a.model_type in todo),
        key=lambda a: (
            a.model_type not in rows,  # re-runs first: what the fixes changed
            a.model_type not in FIRST,
            a.task == "base",
            a.model_type,
        ),
    )
    print(f"running {len(pending)} of {len(archs)} architectures", flush=True)

    def one(arch):
        row = run_model(arch)
        rows[arch.model_type] = row
        print(f"{arch.model_type:32s} {row['seconds']:6.1f}s {_short(row)}", flush=True)
        if cache:
            save_row(row)
        return row

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, pending))
    return rows


def _short(row: dict) -> str:
    if not buildable(row):
        return "unbuildable"
    return (
        " ".join(f"{s}={r['status']}" for s, r in applicable(row).items() if r["status"] != "pass")
        or "all pass"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write docs/coverage.md")
    parser.add_argument("--slice", action="store_true", help="the bounded CI slice, no cache")
    parser.add_argument("--only", help="comma-separated model types")
    parser.add_argument("--rerun", action="store_true", help="ignore cached rows of --only")
    parser.add_argument("--rerun-failed", action="store_true")
    parser.add_argument("--cached", action="store_true", help="run nothing: report the cache")
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument(
        "--base", action="store_true", help="also the model types only the base-model mapping has"
    )
    args = parser.parse_args(argv)
    CODE[0] = _commit() + ("+" if _dirty() else "")
    coverage_stages.prepare()
    archs = [a for a in discover() if args.base or a.task != "base"]
    if args.slice:
        chosen = [a for a in archs if a.model_type in SLICE]
        rows = sweep(chosen, {}, {a.model_type for a in chosen}, cache=False, workers=args.workers)
        print(render(rows))
        bad = {k: failed(r) for k, r in rows.items() if failed(r)}
        return 1 if bad else 0
    if args.only:
        names = set(args.only.split(","))
        archs = [a for a in archs if a.model_type in names]
    rows = load_cache()
    version = _transformers_version()
    todo = {
        a.model_type
        for a in archs
        if a.model_type not in rows or rows[a.model_type].get("transformers") != version
    }
    if args.rerun:
        todo |= {a.model_type for a in archs}
    if args.rerun_failed:
        todo |= {
            a.model_type
            for a in archs
            if a.model_type in rows
            and buildable(rows[a.model_type])
            and not passes_all(rows[a.model_type])
        }
    if not args.cached:
        sweep(archs, rows, todo, cache=True, workers=args.workers)
    names = {a.model_type for a in archs}
    text = render({k: v for k, v in rows.items() if k in names}, len(names))
    print(text.split("### Per model")[0])
    if args.write:
        replace_section(DOC, "## Transformers architectures", text, title="# Coverage")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
