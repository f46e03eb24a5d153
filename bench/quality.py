"""Pruning quality on the trained fixtures: perplexity relative to dense.

For tiny-llama and tiny-moe (../shared/fixtures), at 20% and 50% of the block
parameters removed, no fine-tuning, every criterion with and without the
least-squares refit, plus depth pruning by block influence. Calibration: 64 x
256 tokens of calib.txt, collected once per model (gradients, input
statistics, Gram matrices, block influence) and shared by all criteria.
Evaluation: perplexity on 256-token windows of valid.txt, in float32.

    python bench/quality.py --write          # updates docs/benchmarks.md
    python bench/quality.py --windows 64     # quicker, fewer held-out windows
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

import torch
import transformers as hf

import surgeon
from surgeon.analyzers import analyze
from surgeon.analyzers.importance.calibration import calibrate, token_batches

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
CRITERIA = ["magnitude", "random", "taylor", "wanda-sp", "flap", "activation"]
KINDS = {"tiny-llama": ("mlp",), "tiny-moe": ("expert_mlp",)}


def perplexity(model, windows: torch.Tensor) -> float:
    nll = 0.0
    with torch.no_grad():
        for batch in windows.split(16):
            nll += model(batch, labels=batch).loss.item() * batch.shape[0]
    return math.exp(nll / windows.shape[0])


def windows_of(tokenizer, path: Path, length: int, count: int) -> torch.Tensor:
    ids = tokenizer(path.read_text(encoding="utf-8"), return_tensors="pt").input_ids[0]
    return ids[: (ids.numel() // length) * length].view(-1, length)[:count]


def run_model(name: str, args) -> list[dict]:
    directory = FIXTURES / name
    tokenizer = hf.AutoTokenizer.from_pretrained(directory)
    model = hf.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    held_out = windows_of(tokenizer, FIXTURES / "text" / "valid.txt", 256, args.windows)
    dense = perplexity(model, held_out)
    analysis = analyze(model)
    consumers = {
        m.module
        for g in analysis.prunable
        if g.kind in KINDS[name]
        for m in g.members
        if m.dim == 1
    }
    batches = token_batches(FIXTURES / "text" / "calib.txt", tokenizer, 64, 256)
    started = time.time()
    stats = calibrate(
        model,
        batches,
        gradients=True,
        gram_for=consumers,
        blocks=[b.name for b in analysis.blocks if b.removable],
    )
    print(
        f"{name}: dense perplexity {dense:.3f}, calibration {time.time() - started:.0f} s",
        file=sys.stderr,
    )
    rows = []
    for ratio in args.ratios:
        for criterion in CRITERIA:
            for compensate in (None, "refit"):
                result = surgeon.prune(
                    model,
                    ratio,
                    criterion=criterion,
                    statistics=stats,
                    kinds=KINDS[name],
                    allocation=args.allocation,
                    compensate=compensate,
                    verify_result=False,
                    progress=False,
                )
                rows.append(_row(name, ratio, criterion, compensate, result, held_out, dense))
                print(_line(rows[-1]), file=sys.stderr)
        layers = round(ratio * len(analysis.blocks))
        result = surgeon.prune(
            model,
            criterion="random",
            statistics=stats,
            layers=layers,
            kinds=(),
            verify_result=False,
            progress=False,
        )
        rows.append(
            _row(name, ratio, f"block-influence ({layers} layers)", None, result, held_out, dense)
        )
        print(_line(rows[-1]), file=sys.stderr)
    return rows


def _row(name, ratio, criterion, compensate, result, held_out, dense) -> dict:
    return {
        "model": name,
        "ratio": ratio,
        "criterion": criterion,
        "compensation": compensate or "none",
        "params": result.report.params_after / result.report.params_before,
        "relative": perplexity(result.model, held_out) / dense,
        "dense": dense,
    }


def _line(row: dict) -> str:
    return (
        f"| {row['model']} | {row['ratio']:.0%} | {row['criterion']} | "
        f"{row['compensation']} | {row['params']:.3f} | {row['relative']:.2f}x |"
    )


def table(name: str, rows: list[dict], args) -> str:
    head = (
        "| model | block params removed | criterion | compensation | params kept (all) "
        "| perplexity vs dense |\n|---|---|---|---|---|---|"
    )
    dense = rows[0]["dense"]
    width = "MLP channels" if name == "tiny-llama" else "expert widths"
    return (
        f"### {name}\n\n{head}\n" + "\n".join(_line(r) for r in rows) + "\n\n"
        f"Dense perplexity {dense:.2f} (float32, {args.windows} windows of 256 tokens of "
        f"valid.txt). Width rows cut {width} with {args.allocation} allocation; depth rows "
        "remove the blocks with the least block influence, as many as match the ratio.\n"
    )


def write(sections: dict[str, str], command: str) -> None:
    """Replace this model's subsection of docs/benchmarks.md, keeping the others."""
    path = ROOT / "docs" / "benchmarks.md"
    doc = path.read_text()
    if "## Pruning quality" not in doc:
        doc = doc.rstrip() + "\n\n## Pruning quality\n"
    for name, text in sections.items():
        text = text + f"\nCommand: `{command}`\n"
        pattern = re.compile(rf"### {re.escape(name)}\n.*?(?=\n### |\n## |\Z)", re.S)
        if pattern.search(doc):
            doc = pattern.sub(lambda _, text=text: text, doc)
        else:
            doc = doc.replace("## Pruning quality\n", "## Pruning quality\n\n" + text, 1)
    path.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(KINDS))
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.2, 0.5])
    parser.add_argument("--windows", type=int, default=128)
    parser.add_argument("--allocation", default="global")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    sections = {}
    for name in args.models:
        started = time.time()
        text = table(name, run_model(name, args), args)
        sections[name] = text + f"\n({time.time() - started:.0f} s on a 2-core CPU.)\n"
        print(sections[name])
    if args.write:
        write(sections, ("python bench/quality.py " + " ".join(sys.argv[1:])).strip())


if __name__ == "__main__":
    main()
