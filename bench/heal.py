"""Healing on the trained fixtures: held-out perplexity vs dense after N tokens.

tiny-llama pruned with ``surgeon.prune.RECOMMENDED`` at 20% and 50% of the
block parameters (widths) and at 50% with ``layers="auto"``; tiny-moe at 50%.
Each cell is its own run of ``surgeon.heal`` with that many tokens of
train.txt.xz (the learning-rate schedule spans the run), distilling from the
dense fixture; perplexity on every 256-token window of valid.txt (float32,
``surgeon.evaluate.perplexity``) relative to the dense model. The recipe sweep
chooses the default learning rate, batch and sequence length on a held-out
slice of the training text (never valid.txt). Rows are appended to a JSON-lines
file as they finish, so an interrupted run still reports.

    python bench/heal.py --out rows.jsonl [--only sweep default ce lora iterative moe]
    python bench/heal.py --report rows.jsonl [...] --command TEXT --write

``--scale 1e-4`` shrinks every token count (a CPU check of the harness).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import transformers as hf

import surgeon
from surgeon.evaluate import perplexity, text_windows
from surgeon.heal.data import token_ids
from surgeon.prune import RECOMMENDED

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_sections import replace_section  # noqa: E402
from heal_report import section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
BUDGETS = (1_000_000, 5_000_000, 10_000_000, 20_000_000)
VARIANTS = {  # name -> (fixture, prune arguments)
    "20% widths": ("tiny-llama", {**RECOMMENDED, "ratio": 0.2}),
    "50% widths": ("tiny-llama", {**RECOMMENDED, "ratio": 0.5}),
    "50% layers=auto": ("tiny-llama", {**RECOMMENDED, "ratio": 0.5, "layers": "auto"}),
    "moe 50% widths": ("tiny-moe", {**RECOMMENDED, "ratio": 0.5}),
}
SWEEP = (  # (label, options) at 50% widths, 5M tokens
    ("lr 5e-4", {"lr": 5e-4}),
    ("lr 1e-3", {"lr": 1e-3}),
    ("lr 2e-3", {"lr": 2e-3}),
    ("lr 4e-3", {"lr": 4e-3}),
    ("batch 64", {"batch_size": 64}),
    ("batch 16", {"batch_size": 16}),
    ("seq 1024, batch 16", {"seq_len": 1024, "batch_size": 16}),
    ("seq 256, batch 64", {"seq_len": 256, "batch_size": 64}),
)
GROUPS = {  # group -> (variants, recipe changes, label)
    "default": (("50% widths", "20% widths", "50% layers=auto"), {}, "default recipe"),
    "ce": (("50% widths",), {"ce_weight": 1.0}, "cross-entropy only"),
    "lora": (("50% widths",), {"lora": True}, "LoRA (rank 64)"),
    "iterative": (("50% widths",), {"steps": 2}, "iterative, 2 cuts"),
    "moe": (("moe 50% widths",), {}, "default recipe"),
    "auto": (("50% layers=auto",), {}, "default recipe"),
    "lora-lr": (("50% widths",), {"lora": True, "lr": 4e-3}, "LoRA (rank 64), lr 4e-3"),
}


class Bench:
    def __init__(self, args) -> None:
        self.args, self.fixtures = args, Path(args.fixtures)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.started = time.time()
        self.models: dict[str, tuple] = {}
        self.cuts: dict[str, object] = {}
        self.recipe: dict = {}
        text = self.fixtures / "text"
        self.tokenizer = hf.AutoTokenizer.from_pretrained(self.fixtures / "tiny-llama")
        ids = token_ids(text / "train.txt.xz", self.tokenizer)
        self.train = ids[: int(args.train_limit)] if args.train_limit else ids
        valid = text_windows(text / "valid.txt", self.tokenizer, 256)
        self.valid = valid[: args.windows] if args.windows else valid
        print(f"train {self.train.numel():,} tokens, valid {tuple(self.valid.shape)}", flush=True)

    def dense(self, fixture: str):
        if fixture not in self.models:
            model = hf.AutoModelForCausalLM.from_pretrained(
                self.fixtures / fixture, dtype=torch.float32
            )
            model = model.to(self.device).eval()
            self.models[fixture] = (model, perplexity(model, self.valid))
        return self.models[fixture]

    def cut(self, variant: str):
        if variant not in self.cuts:
            fixture, arguments = VARIANTS[variant]
            dense, _ = self.dense(fixture)
            arguments = dict(arguments)
            result = surgeon.prune(
                dense,
                arguments.pop("ratio"),
                calib=self.fixtures / "text" / "calib.txt",
                tokenizer=self.tokenizer,
                progress=False,
                **arguments,
            )
            self.cuts[variant] = (result.model, perplexity(result.model, self.valid), result)
        return self.cuts[variant]

    def run(self, group: str, variant: str, label: str, tokens: int, changes: dict) -> dict:
        fixture, arguments = VARIANTS[variant]
        dense, dense_ppl = self.dense(fixture)
        tokens = max(1, int(tokens * self.args.scale))
        options = {**self.recipe, **changes, **self.args.override, "progress": False}
        steps = options.pop("steps", 1)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        begun = time.time()
        if steps > 1:
            arguments = dict(arguments)
            schedule = surgeon.heal.Schedule(self.train, tokens, steps=steps, options=options)
            result = surgeon.heal.iterative(
                dense,
                arguments.pop("ratio"),
                heal=schedule,
                calib=self.fixtures / "text" / "calib.txt",
                tokenizer=self.tokenizer,
                progress=False,
                **arguments,
            )
            model, heals = result.model, result.heals
            before = None
        else:
            pruned, before, _ = self.cut(variant)
            student = copy.deepcopy(pruned)
            healed = surgeon.heal(student, dense, self.train, tokens=tokens, **options)
            model, heals = healed.model, [healed]
        after = perplexity(model, self.valid)
        row = {
            "group": group,
            "variant": variant,
            "label": label,
            "fixture": fixture,
            "tokens": tokens,
            "options": {**changes},
            "recipe": {**self.recipe},
            "dense_ppl": dense_ppl,
            "before_ppl": before,
            "after_ppl": after,
            "ratio": after / dense_ppl,
            "before_ratio": None if before is None else before / dense_ppl,
            "held_out_train_ppl": heals[-1].perplexity_after,
            "seconds": time.time() - begun,
            "train_seconds": sum(h.seconds for h in heals),
            "tokens_per_second": sum(h.tokens for h in heals) / sum(h.seconds for h in heals),
            "peak_gib": max((h.peak_memory or 0) for h in heals) / 2**30,
            "params": sum(p.numel() for p in model.parameters()),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__,
            "transformers": hf.__version__,
        }
        del model, heals
        self.write(row)
        return row

    def write(self, row: dict) -> None:
        print(json.dumps(row), flush=True)
        with open(self.args.out, "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def time_left(self) -> bool:
        return time.time() - self.started < self.args.deadline

    def sweep(self) -> None:
        """Choose lr, batch and sequence length at 50% widths, 5M tokens, on the
        held-out tail of the training text; the winner becomes self.recipe."""
        results = []
        for label, changes in SWEEP:
            if "batch" in label or "seq" in label:  # shapes at the best learning rate so far
                best = min((r for r in results if "lr" in r["options"]), key=_held_out)
                changes = {"lr": best["options"]["lr"], **changes}
            if not self.time_left():
                break
            results.append(self.run("sweep", "50% widths", label, 5_000_000, changes))
        best = min(results, key=_held_out)
        self.recipe = dict(best["options"])
        self.write({"group": "chosen", "recipe": self.recipe, "from": best["label"]})

    def table(self, group: str, budgets) -> None:
        variants, changes, label = GROUPS[group]
        for variant in variants:
            for tokens in budgets:
                if self.time_left():
                    self.run(group, variant, label, tokens, changes)


def _held_out(row: dict) -> float:
    return row["held_out_train_ppl"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", default=str(FIXTURES))
    parser.add_argument("--out", default="heal-rows.jsonl")
    parser.add_argument(
        "--only", nargs="+", default=["sweep", *GROUPS], help="GROUP[:MILLIONS,...] to run"
    )
    parser.add_argument("--recipe", default="{}", help="JSON options when the sweep is skipped")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every token count")
    parser.add_argument(
        "--override", type=json.loads, default={}, help="JSON options over every run's (checks)"
    )
    parser.add_argument("--train-limit", type=float, default=0, help="first N training tokens")
    parser.add_argument("--windows", type=int, default=0, help="first N valid windows (0: all)")
    parser.add_argument("--deadline", type=float, default=1e9, help="start no run after N s")
    parser.add_argument("--report", nargs="+", help="render docs from these JSON-lines files")
    parser.add_argument("--command", default="", help="the command(s) that made the rows")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.report:
        lines = [line for f in args.report for line in Path(f).read_text().splitlines()]
        rows = [json.loads(line) for line in lines if line.strip()]
        text = section(rows, args.command)
        print(text)
        if args.write:
            replace_section(ROOT / "docs" / "benchmarks.md", "## Healing", text)
        return
    bench = Bench(args)
    bench.recipe = json.loads(args.recipe)
    for spec in args.only:  # GROUP or GROUP:1,5,10 (millions of tokens)
        group, _, millions = spec.partition(":")
        if group == "sweep":
            bench.sweep()
        else:
            budgets = [int(float(m) * 1e6) for m in millions.split(",")] if millions else None
            bench.table(group, budgets or args.budgets)


if __name__ == "__main__":
    main()
