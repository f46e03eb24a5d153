"""Long fuzzing run: the property of ``tests/fuzz/test_fuzz.py`` outside pytest.

Example ``i`` is drawn from ``random.Random(f"{seed}:{i}")`` with the same
grammar as the hypothesis strategy (``tests/fuzz/grammar.py``): the spec
first, then the plan from the analysis. Each example is analysed, cut and
verified, and its outcome counted: verified, verified with a mismatch wholly
explained by norm statistics, refused (by reason), nothing prunable, and the
failures (silent mismatch, crash inside the library, a model changed by a
refused call). Failures are saved with their spec and plan to a JSON file;
``--replay I`` reruns example ``I`` alone and prints the whole story.

Run::

    python bench/fuzz_long.py --examples 10000 --seed 0 --workers 2
    python bench/fuzz_long.py --examples 10000 --write   # also docs/reliability.md and
                                                         # tests/fuzz/known_failures.json
    python bench/fuzz_long.py --replay 1234              # one example, verbosely
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from doc_sections import replace_section
from environment import machine, versions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOC = ROOT / "docs" / "reliability.md"
KNOWN_FAILURES = ROOT / "tests" / "fuzz" / "known_failures.json"
SECTION = "## Fuzzing"


def _example(seed: int, index: int):
    from tests.fuzz.build import build
    from tests.fuzz.grammar import RandomChooser, random_spec
    from tests.fuzz.harness import check
    from tests.fuzz.plans import draw_trial

    rng = random.Random(f"{seed}:{index}")
    spec = random_spec(rng)
    case = build(spec)
    outcome = check(case, lambda analysis: draw_trial(analysis, RandomChooser(rng)))
    return spec, outcome


def _init_worker(quiet: bool) -> None:
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    if quiet:  # torch prints tracebacks of failed traces to stderr; keep progress readable
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the worker


def _run(job: tuple[int, int]) -> dict:
    seed, index = job
    start = time.perf_counter()
    try:
        spec, outcome = _example(seed, index)
    except Exception as error:  # a bug in the grammar itself (FuzzerBug) or the harness
        return {
            "index": index,
            "key": f"harness error: {type(error).__name__}: {str(error)[:200]}",
            "status": "harness",
            "failed": True,
            "seconds": time.perf_counter() - start,
        }
    record = {
        "index": index,
        "key": outcome.key if outcome.status != "verified" else "verified",
        "status": outcome.status,
        "failed": outcome.failed,
        "seconds": time.perf_counter() - start,
    }
    if outcome.failed:
        record.update(
            spec=repr(spec),
            spec_data=asdict(spec),
            stage=outcome.stage,
            plan=outcome.trial.plan.to_dict() if outcome.trial else None,
            inplace=outcome.trial.inplace if outcome.trial else None,
            detail=outcome.detail,
        )
    return record


def _category(key: str) -> str:
    if key.startswith("verified-inexact"):
        return "verified (mismatch explained by norm statistics)"
    if key == "verified":
        return "verified"
    if key.startswith("refused"):
        return "refused"
    if key == "nothing-prunable":
        return "nothing prunable"
    return "FAILURE"


def run(args) -> tuple[list[dict], float]:
    from tqdm import tqdm

    jobs = [(args.seed, i) for i in range(args.start, args.start + args.examples)]
    records: list[dict] = []
    started = time.perf_counter()
    progress = tqdm(total=len(jobs), file=sys.stderr, unit="ex", smoothing=0.05)
    failures = 0
    if args.workers <= 1:
        _init_worker(quiet=False)
        results = map(_run, jobs)
        pool = contextlib.nullcontext()
    else:
        context = multiprocessing.get_context("fork")
        pool = context.Pool(
            args.workers, initializer=_init_worker, initargs=(True,), maxtasksperchild=200
        )
        results = pool.imap_unordered(_run, jobs, chunksize=4)
    with pool:
        for record in results:
            records.append(record)
            failures += record["failed"]
            progress.update()
            progress.set_postfix(failures=failures, refresh=False)
    progress.close()
    records.sort(key=lambda r: r["index"])
    return records, time.perf_counter() - started


def table(records: list[dict]) -> str:
    total = len(records)
    keys = Counter(r["key"] for r in records)
    by_category: dict[str, Counter] = {}
    for key, count in keys.items():
        by_category.setdefault(_category(key), Counter())[key] = count
    order = [
        "verified",
        "verified (mismatch explained by norm statistics)",
        "refused",
        "nothing prunable",
        "FAILURE",
    ]
    lines = ["| outcome | reason | examples | share |", "|---|---|---|---|"]
    for category in order:
        counter = by_category.get(category, Counter())
        count = sum(counter.values())
        lines.append(f"| **{category}** | | **{count}** | {100 * count / max(total, 1):.1f}% |")
        if category in ("refused", "FAILURE"):
            for key, n in counter.most_common():
                reason = key.split(": ", 1)[1] if ": " in key else key
                if category == "FAILURE":
                    reason = key
                reason = reason.replace("|", "\\|")
                lines.append(f"| | {reason} | {n} | {100 * n / max(total, 1):.1f}% |")
    lines.append(f"| **total** | | **{total}** | 100% |")
    return "\n".join(lines)


def section(records: list[dict], seconds: float, args) -> str:
    failures = [r for r in records if r["failed"]]
    command = (
        f"python bench/fuzz_long.py --examples {args.examples} --seed {args.seed} "
        f"--workers {args.workers} --write"
    )
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION,
        "",
        "Random architectures from the grammar of `tests/fuzz/grammar.py` (linear and "
        "conv chains, residual adds, concat, split/chunk, heads, MHA/GQA attention, norms, "
        "embeddings with tied heads, gated MLPs, top-k MoE, functional weights), each with a "
        "random plan, cut with `surgeon.apply` and checked with `surgeon.verify`. An example "
        "passes if the cut model verifies (max relative error <= 1e-5 in fp32; a mismatch only "
        "where the report lists norm-statistics groups as inexact, the rest of the plan "
        "verifying exactly) or if a `SurgeonError` is raised before surgery with the model "
        "unchanged. A silent mismatch or any other exception is a failure.",
        "",
        table(records),
        "",
        f"- {len(failures)} failures"
        + (f", saved with spec and plan in `{_shown(args.failures)}`." if failures else "."),
        f"- Command: `{command}`.",
        f"- Runtime: {seconds:.0f} s wall for {len(records)} examples "
        f"({seconds / max(len(records), 1):.2f} s each, {args.workers} workers).",
        f"- Machine: {machine()}; {versions('torch', 'transformers', 'hypothesis')}.",
        f"- Date: {when}.",
    ]
    return "\n".join(lines) + "\n"


def _shown(path: str) -> str:
    """``path`` relative to the repository when it lies inside it."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path


def write_doc(text: str) -> None:
    replace_section(DOC, SECTION, text, title="# Reliability")


def replay(seed: int, index: int) -> int:
    import torch

    torch.set_num_threads(1)
    spec, outcome = _example(seed, index)
    print(f"example {index} (seed {seed}):\n  {spec!r}\n")
    print(outcome.describe())
    return 1 if outcome.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="index of the first example")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--failures",
        help="where failing specs are saved (JSON); default: "
        f"{_shown(str(KNOWN_FAILURES))} with --write, else a temporary file",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help=f"write the '{SECTION}' section of {DOC.relative_to(ROOT)}",
    )
    parser.add_argument("--replay", type=int, metavar="I", help="rerun example I verbosely")
    args = parser.parse_args(argv)
    if args.replay is not None:
        return replay(args.seed, args.replay)
    if args.failures is None:
        temporary = Path(tempfile.gettempdir()) / "fuzz_failures.json"
        args.failures = str(KNOWN_FAILURES if args.write else temporary)

    records, seconds = run(args)
    failures = [r for r in records if r["failed"]]
    Path(args.failures).write_text(
        json.dumps({"seed": args.seed, "examples": args.examples, "failures": failures}, indent=1)
    )
    text = section(records, seconds, args)
    print(text)
    if failures:
        print(
            f"{len(failures)} failures; replay one with: python bench/fuzz_long.py "
            f"--seed {args.seed} --replay {failures[0]['index']}",
            file=sys.stderr,
        )
    if args.write:
        write_doc(text)
        print(f"wrote {DOC}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
