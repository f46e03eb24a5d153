"""Cut models served by llama.cpp on this CPU: tokens/s of the dense tiny-llama
and of its cuts, exported with ``surgeon.export.gguf`` (f16, the default) and
run through llama-cpp-python, beside their parameter ratios.

The cuts come from ``surgeon.prune`` with its defaults (relative allocation:
ragged MLP widths, served through llama.cpp's ``deci`` graph), scored by
weight magnitude so no calibration is needed (scores change which channels
go, not the shapes' cost), and one uniform cut (``allocation="uniform"``, the
``llama`` graph).

Each model: prefill of a 128-token prompt from held-out text, then 64 decode
steps fed the text's next tokens one at a time (``Llama.eval``), with 1 and
with 2 threads. The machine's 2 cores are shared with other engineers' jobs,
so every model is timed ``--repeats`` times in turns and the median is
reported with the range and the load average. It is a benchmark, not a test:
it reports numbers and checks none.

    python bench/gguf_speed.py           # print the section
    python bench/gguf_speed.py --write   # also replace its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from doc_sections import replace_section
from environment import machine, versions

import surgeon
from surgeon.export import gguf

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results" / "gguf_speed.json"
SECTION = "## GGUF in llama.cpp (CPU)"
FIXTURES = ROOT.parent / "shared" / "fixtures"
PROMPT, DECODE = 128, 64
THREADS = (1, 2)
VARIANTS = {  # name -> prune options (None: the dense model)
    "dense": None,
    "uniform 50%": dict(ratio=0.5, allocation="uniform", layers=0),
    "default 30%": dict(ratio=0.3),
    "default 50%": dict(ratio=0.5),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cut(model, options):
    if options is None:
        return model
    options = dict(options)
    result = surgeon.prune(
        model, options.pop("ratio"), criterion="magnitude", progress=False, **options
    )
    return result.model.float()


def timed(path: Path, tokens: list[int], threads: int) -> dict[str, float]:
    """Tokens per second of one run, prefill and decode, by the wall clock and
    per CPU-second of this process (which other jobs on the cores do not inflate)."""
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=PROMPT + DECODE + 8, n_threads=threads, verbose=False)
    clocks = lambda: (time.perf_counter(), time.process_time())  # noqa: E731
    start = clocks()
    llm.eval(tokens[:PROMPT])
    middle = clocks()
    for token in tokens[PROMPT : PROMPT + DECODE]:
        llm.eval([token])
    end = clocks()
    llm.close()
    return {
        f"prefill{threads}": PROMPT / (middle[0] - start[0]),
        f"prefill{threads}cpu": PROMPT / (middle[1] - start[1]),
        f"decode{threads}": DECODE / (end[0] - middle[0]),
        f"decode{threads}cpu": DECODE / (end[1] - middle[1]),
    }


def measure(repeats: int) -> list[dict]:
    directory = FIXTURES / "tiny-llama"
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    dense = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    text = (FIXTURES / "text" / "valid.txt").read_text()[:20000]
    tokens = tokenizer(text)["input_ids"]
    dense_params = sum(p.numel() for p in dense.parameters())
    work = Path(tempfile.mkdtemp(prefix="gguf_speed-"))
    rows = []
    for name, options in VARIANTS.items():
        log(f"{name}: cutting and exporting")
        model = cut(dense.eval(), options)
        written = gguf(model, work / f"{len(rows)}.gguf", dtype="f16", tokenizer=tokenizer)
        widths = [layer.ffn for layer in written.shape.layers]
        rows.append(
            dict(
                name=name,
                architecture=written.architecture,
                layers=len(widths),
                widths=f"{min(widths)}-{max(widths)}",
                params=written.parameters,
                param_ratio=written.parameters / dense_params,
                file_mb=written.path.stat().st_size / 2**20,
                path=str(written.path),
                **{
                    f"{kind}{n}{clock}": []
                    for kind in ("prefill", "decode")
                    for n in THREADS
                    for clock in ("", "cpu")
                },
            )
        )
    for turn in range(repeats):
        for row in rows:
            for threads in THREADS:
                for key, value in timed(Path(row["path"]), tokens, threads).items():
                    row[key].append(value)
        log(f"turn {turn + 1}/{repeats}: load average {os.getloadavg()[0]:.2f}")
    for row in rows:
        Path(row.pop("path")).unlink()
    work.rmdir()
    return rows


def section(rows: list[dict], repeats: int, load: tuple[float, float]) -> str:
    dense = rows[0]

    def cell(row: dict, key: str) -> str:
        values = row[key]
        return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"

    def versus(row: dict, key: str) -> str:
        return f"{statistics.median(row[key]) / statistics.median(dense[key]):.2f}x"

    lines = [
        SECTION,
        "",
        "The trained tiny-llama fixture (18.9M parameters) and cuts of it made by "
        "`surgeon.prune` (magnitude scores; shapes as the defaults make them), written by "
        "`surgeon.export.gguf` in f16 and run by llama.cpp through llama-cpp-python: a "
        f"{PROMPT}-token prompt, then {DECODE} decode steps one token at a time, with 1 and "
        f"2 threads. Median of {repeats} runs taken in turns, range in brackets. The 2 cores "
        f"were shared with other engineers' jobs (load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after), so wall-clock numbers move between runs and 2 threads "
        "suffer most (llama.cpp's threads wait for each other). Tokens per CPU-second of the "
        "1-thread runs count only this process's own work and are the steadiest measure; "
        "compare ratios within one run.",
        "",
        "| model | llama.cpp graph | layers | MLP widths | params (ratio) | file MB "
        "| decode tok per CPU-s, 1 thread (vs dense) | prefill tok per CPU-s, 1 thread "
        "| decode tok/s wall, 1 thread | decode tok/s wall, 2 threads |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['architecture']} | {row['layers']} | {row['widths']} "
            f"| {row['params'] / 1e6:.1f}M ({row['param_ratio']:.2f}) | {row['file_mb']:.1f} "
            f"| {cell(row, 'decode1cpu')} ({versus(row, 'decode1cpu')}) "
            f"| {cell(row, 'prefill1cpu')} ({versus(row, 'prefill1cpu')}) "
            f"| {cell(row, 'decode1')} ({versus(row, 'decode1')}) "
            f"| {cell(row, 'decode2')} ({versus(row, 'decode2')}) |"
        )
    lines += [
        "",
        f"Machine: {machine()}. {versions('torch', 'transformers', 'gguf', 'llama-cpp-python')}.",
        "Reproduce: `python bench/gguf_speed.py --write`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="replace the docs section")
    args = parser.parse_args()
    before = os.getloadavg()[0]
    rows = measure(args.repeats)
    text = section(rows, args.repeats, (before, os.getloadavg()[0]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2))
    print(text)
    if args.write:
        replace_section(DOC, SECTION, text)


if __name__ == "__main__":
    main()
