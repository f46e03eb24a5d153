"""Pruning quality on the trained fixtures: perplexity relative to dense.

For tiny-llama and tiny-moe (../shared/fixtures), at 20% and 50% of the block
parameters removed, no fine-tuning: every registered criterion with each
compensation (none, FLAP's bias shift, least-squares refit), the recommended
recipe, the published recipes re-run here (LLM-Pruner-style Taylor on MLP
neurons, Wanda-sp, FLAP, ShortGPT), and Torch-Pruning 1.6.1 (magnitude and
Taylor, as its LLM example prunes; see bench/tp_baseline.py) in the same
process. Calibration: 64 x 256 tokens of calib.txt, collected once per model
(gradients, per-feature input statistics, Gram matrices of every consumer
layer, block influence) and shared by every row, Torch-Pruning's Taylor
included. Evaluation: surgeon.evaluate.perplexity on 256-token windows of
valid.txt, float32. Rows are appended to a JSON file as they finish, so an
interrupted run can still be written (``--from-json``).

    python bench/quality.py --write               # runs everything, updates docs/benchmarks.md
    python bench/quality.py --from-json F [F ...] --commands TEXT --write  # from saved runs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import transformers as hf

import surgeon
from surgeon.analyzers import analyze
from surgeon.calibrate.calibration import calibrate, token_batches
from surgeon.calibrate.criteria import CRITERIA
from surgeon.evaluate import perplexity, text_windows
from surgeon.plan.costs import block_parameters
from surgeon.prune import RECOMMENDED

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_sections import replace_section  # noqa: E402
from tp_baseline import tp_prune  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
WIDTH = {"tiny-llama": ("mlp",), "tiny-moe": ("expert_mlp",)}
COMPENSATIONS = (None, "bias", "refit")
# The recipe surgeon.prune recommends (RECOMMENDED in surgeon/prune.py): FLAP scores,
# uniform allocation, least-squares refit with an intercept.
RECIPE = {k: v for k, v in RECOMMENDED.items() if k != "kinds"}


def recipes(name: str, ratio: float, blocks: int) -> list[tuple[str, dict]]:
    """(label, surgeon.prune arguments) of every surgeon row at ``ratio``."""
    width = WIDTH[name]
    rows = [
        (f"{criterion}", {"criterion": criterion, "kinds": width, "compensate": compensate})
        for criterion in CRITERIA
        for compensate in COMPENSATIONS
    ]
    rows += [
        ("**recommended**: flap", {**RECIPE, "kinds": width}),
        (
            "flap, relative allocation",
            {**RECIPE, "kinds": width, "allocation": "relative"},
        ),
        (
            "anchor: LLM-Pruner-style Taylor (neurons, uniform)",
            {"criterion": "taylor", "kinds": width, "allocation": "uniform"},
        ),
        (
            "anchor: Wanda-sp (neurons, uniform)",
            {"criterion": "wanda-sp", "kinds": width, "allocation": "uniform"},
        ),
        (
            "anchor: FLAP (heads + neurons, adaptive, bias)",
            {
                "criterion": "flap",
                "kinds": (*width, "attention"),
                "allocation": "adaptive",
                "compensate": "bias",
            },
        ),
    ]
    whole = max(1, round(ratio * blocks / 4))  # about a quarter of the target as depth
    rows.append(
        (
            f"recommended + whole layers ({whole} of {blocks}), widths for the rest",
            {**RECIPE, "kinds": width, "layers": whole},
        )
    )
    rows.append(
        (
            "recommended with the planner's default depth (layers='auto')",
            {**RECIPE, "kinds": width, "layers": "auto"},
        )
    )
    layers = round(ratio * blocks)
    rows.append(
        (
            f"anchor: ShortGPT ({layers} of {blocks} layers)",
            {"criterion": "random", "layers": layers, "kinds": ()},
        )
    )
    return [(label, {"layers": 0, **options}) for label, options in rows]  # widths unless said


def run_model(name: str, args, log) -> list[dict]:
    directory = FIXTURES / name
    tokenizer = hf.AutoTokenizer.from_pretrained(directory)
    model = hf.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    held_out = text_windows(FIXTURES / "text" / "valid.txt", tokenizer, 256, args.windows)
    dense = perplexity(model, held_out)
    analysis = analyze(model)
    consumers = {m.module for g in analysis.prunable for m in g.members if m.dim == 1}
    batches = token_batches(FIXTURES / "text" / "calib.txt", tokenizer, 64, 256)
    started = time.time()
    stats = calibrate(
        model,
        batches,
        gradients=True,
        gram_for=consumers,
        blocks=[b.name for b in analysis.blocks if b.removable],
        progress=False,
    )
    _say(f"{name}: dense perplexity {dense:.3f}, calibration {time.time() - started:.0f} s")
    rows, uncompensated = [], {}
    removable = len([b for b in analysis.blocks if b.removable])
    for ratio in args.ratios:
        for label, options in recipes(name, ratio, removable):
            if args.only and not any(word in label for word in args.only):
                continue
            options = dict(options)
            depth_only = options.get("kinds") == ()  # ShortGPT: whole layers, no widths
            row = {"model": name, "ratio": ratio, "method": label, "dense": dense}
            row.update(
                allocation="depth" if depth_only else options.get("allocation", "global"),
                compensation=options.get("compensate") or "none",
            )
            try:
                result = surgeon.prune(
                    model,
                    None if depth_only else ratio,  # removed layers count toward a ratio
                    statistics=stats,
                    verify=False,
                    progress=False,
                    **options,
                )
            except Exception as error:  # noqa: BLE001 - a failure is a row
                row["error"] = f"{type(error).__name__}: {error}"[:160]
                rows.append(_log(log, row))
                continue
            report = result.report
            used = sorted(set(report.criterion.values()))
            row["scored_by"] = ", ".join(used) if used else "block influence"
            row["params"] = report.params_after / report.params_before
            row["block_removed"] = _block_removed(analysis, model, result.model)
            key = (ratio, label, row["allocation"])
            if report.compensation and report.compensation.endswith("(0 layers)"):
                row["compensation"] += " (no-op: no nn.Linear consumer)"
                if key in uncompensated:  # the same model as the uncompensated row
                    row["relative"] = uncompensated[key]
            if "relative" not in row:
                row["relative"] = perplexity(result.model, held_out) / dense
            if not options.get("compensate"):
                uncompensated[key] = row["relative"]
            rows.append(_log(log, row))
        if not args.only or any("Torch-Pruning".startswith(w) for w in args.only):
            rows += _torch_pruning(name, model, stats, batches, held_out, dense, ratio, log)
    return rows


def _torch_pruning(name, model, stats, batches, held_out, dense, ratio, log) -> list[dict]:
    """Torch-Pruning rows; its Taylor reads the gradients surgeon calibrated."""
    base = hf.AutoModelForCausalLM.from_pretrained(
        FIXTURES / name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    for param_name, param in base.named_parameters():
        grad = stats.gradients.get(param_name)
        param.grad = None if grad is None else grad.to(param.dtype)
    rows = []
    for importance in ("magnitude", "taylor"):
        for heads in (True, False):
            label = f"Torch-Pruning {importance} ({'heads + neurons' if heads else 'neurons'})"
            row = {"model": name, "ratio": ratio, "method": label, "dense": dense}
            row.update(allocation="uniform", compensation="none", scored_by=importance)
            if name in _TP_HUNG:  # one run that hung is enough to know
                row["error"] = f"not run: {_TP_HUNG[name]} on an earlier row"
                rows.append(_log(log, row))
                continue
            tp = tp_prune(base, importance, ratio, heads, batches[0][:1, :16], TP_LIMIT)
            if tp.error and tp.error.startswith("no answer"):
                _TP_HUNG[name] = tp.error
            if tp.error:
                row["error"] = tp.error
            else:
                params = sum(p.numel() for p in tp.model.parameters())
                row["params"] = params / sum(p.numel() for p in model.parameters())
                row["block_removed"] = tp.block_removed
                row["note"] = tp.note
                row["relative"] = perplexity(tp.model, held_out) / dense
            rows.append(_log(log, row))
    return rows


TP_LIMIT = 180  # seconds for one Torch-Pruning run (tracing, scoring, cutting)
_TP_HUNG: dict[str, str] = {}


def _block_removed(analysis, model, pruned) -> float:
    """Fraction of the block parameters (surgeon.plan.costs.block_parameters) removed."""
    block = block_parameters(analysis)
    return (
        sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in pruned.parameters())
    ) / block


def _log(log, row: dict) -> dict:
    _say(_line(row))
    if log is not None:
        log.write(json.dumps(row) + "\n")
        log.flush()
    return row


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _line(row: dict) -> str:
    if "error" in row:
        result = f"**failed:** {row['error']}"
        return (
            f"| {row['ratio']:.0%} | {row['method']} | {row.get('scored_by', '')} | "
            f"{row['allocation']} | {row['compensation']} | — | — | {result} |"
        )
    note = f" ({row['note']})" if row.get("note") else ""
    return (
        f"| {row['ratio']:.0%} | {row['method']}{note} | {row['scored_by']} | "
        f"{row['allocation']} | {row['compensation']} | {row['block_removed']:.1%} | "
        f"{row['params']:.3f} | {row['relative']:.2f}x |"
    )


def table(name: str, rows: list[dict], args) -> str:
    head = (
        "| target | method | scored by | allocation | compensation | block params removed "
        "| params kept (all) | perplexity vs dense |\n|---|---|---|---|---|---|---|---|"
    )
    dense = rows[0]["dense"]
    best = {}
    for r in rows:
        mine = "relative" in r and not r["method"].startswith(("anchor", "Torch"))
        mine = mine and "(no-op" not in r["compensation"]
        if mine and (r["ratio"] not in best or r["relative"] < best[r["ratio"]]["relative"]):
            best[r["ratio"]] = r
    summary = "; ".join(
        f"best at {ratio:.0%}: {r['method'].removeprefix('**recommended**: ')} "
        f"({r['allocation']}) + {r['compensation']} "
        f"{r['relative']:.3f}x"
        for ratio, r in sorted(best.items())
    )
    summary += ". " + _compare(rows)
    return (
        f"### {name}\n\nDense perplexity {dense:.2f} ({args.windows} windows of 256 tokens "
        f"of valid.txt, float32). {summary}.\n\n{head}\n" + "\n".join(_line(r) for r in rows) + "\n"
    )


def _compare(rows: list[dict]) -> str:
    """Per target: the recommended recipe, the best anchor, the best Torch-Pruning row."""
    parts = []
    for ratio in sorted({r["ratio"] for r in rows}):
        done = [r for r in rows if r["ratio"] == ratio and "relative" in r]
        found = []
        for prefix, name in (
            ("**recommended**", "recommended"),
            ("anchor", "best published recipe"),
            ("Torch-Pruning", "best Torch-Pruning"),
        ):
            chosen = [r for r in done if r["method"].startswith(prefix)]
            if chosen:
                r = min(chosen, key=lambda r: r["relative"])
                label = r["method"].removeprefix("anchor: ").removeprefix("**recommended**: ")
                found.append(f"{name} {r['relative']:.3f}x ({label})")
        parts.append(f"At {ratio:.0%}: " + ", ".join(found) if found else "")
    return ". ".join(p for p in parts if p)


def write(sections: dict[str, str], command: str) -> None:
    """Replace the "## Pruning quality" section of docs/benchmarks.md (read fresh)."""
    body = "## Pruning quality\n\n" + INTRO + "\n" + "\n".join(sections.values())
    replace_section(ROOT / "docs" / "benchmarks.md", "## Pruning quality", body + "\n" + command)


INTRO = """\
No fine-tuning. Calibration: 64 x 256 tokens of calib.txt, collected once per model
(gradients, per-feature input statistics, Gram matrices of the consumer layers, block
influence) and shared by every row, Torch-Pruning's Taylor included. "target" is the
fraction of the block parameters (attention + MLP/experts, `surgeon.plan.costs.block_parameters`)
to remove; "block params removed" is what each method actually removed. Width rows cut
MLP channels (tiny-llama) or expert channels (tiny-moe) with global allocation unless
the row says otherwise. Compensation: "bias" is FLAP's mean shift into the consumer's
bias (the config's `mlp_bias` flag is set so the model reloads), "refit" the least-squares
refit of the consumer layers, "refit+bias" both at once (least squares with an intercept).
"scored by" shows a criterion's fallback where a group lacks its statistics (fused experts
have no nn.Linear consumer, so activation-based criteria fall back to taylor, and no
compensation applies to them). Torch-Pruning 1.6.1 runs as its examples/LLMs/prune_llm.py
does (MetaPruner, num_heads with GQA, prune_num_heads, eager attention), with the hidden
size left alone and the MLP ratio set to match the target (bench/tp_baseline.py); a run
with no answer within 180 s is reported as such and the model's other TP rows are skipped.
"**recommended**" is `prune(model, ratio, calib=..., **RECOMMENDED)` with
`from surgeon.prune import RECOMMENDED`: FLAP scores, the same width in every layer,
refit with an intercept. It needs nn.Linear consumers: on fused
experts FLAP falls back to (standardised) Taylor and nothing is compensated.
Width rows keep every layer (`layers=0`). "recommended with the planner's default
depth" lets `layers="auto"` (the planner's default since the GPU speed work) remove
whole layers for decode speed: these 6- and 8-layer models are all per-layer cost on
a GPU, so it takes none at 20% (less than one layer fits in half the target) and the
most the depth share allows at 50% (1 of 6, 2 of 8): the price of the default's speed
at 50%, against the recommended width-only rows.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(WIDTH))
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.2, 0.5])
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--json", default="bench/quality-rows.jsonl", help="rows, appended")
    parser.add_argument("--only", nargs="+", help="run only rows whose label has one of these")
    parser.add_argument(
        "--from-json", nargs="+", help="render saved runs (rows merged in order) instead"
    )
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--commands", help="text for the section's Command line (merged runs)")
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.time()
    if args.from_json:
        saved = [
            json.loads(line) for f in args.from_json for line in Path(f).read_text().splitlines()
        ]
        saved.sort(key=lambda r: r["ratio"])  # stable: each file's order within a ratio
        for row in saved:  # an earlier run's recipe row (flap, global) is an ordinary row now
            row["method"] = row["method"].replace("**recipe**: flap + refit+bias", "flap")
        by_model = {name: [r for r in saved if r["model"] == name] for name in args.models}
        seconds = None
    else:
        with open(args.json, "w") as log:
            by_model = {name: run_model(name, args, log) for name in args.models}
        seconds = time.time() - started
    sections = {name: table(name, rows, args) for name, rows in by_model.items() if rows}
    for text in sections.values():
        print(text)
    if args.write:
        when = f" ({seconds / 60:.0f} min on the shared 2-core CPU)" if seconds else ""
        line = " ".join(a for a in sys.argv[1:] if a != "--write")
        command = args.commands or (
            f"Command: `python bench/quality.py {line} --write`{when}.".replace("  ", " ")
        )
        write(sections, command + "\n")


if __name__ == "__main__":
    main()
