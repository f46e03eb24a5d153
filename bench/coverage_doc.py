"""Rows of the coverage sweep as a table: outcomes per stage, distinct failure
causes with one example each, and the per-model grid (docs/coverage.md)."""

from __future__ import annotations

import re
from collections import Counter

from coverage_stages import STAGES

FAILURES = ("mismatch", "crash", "timeout")


def _transformers_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("transformers")


def buildable(row: dict) -> bool:
    return row["stages"].get("build", {}).get("status") == "pass"


def applicable(row: dict) -> dict[str, dict]:
    return {s: r for s, r in row["stages"].items() if s != "build" and r["status"] != "n/a"}


def passes_all(row: dict) -> bool:
    return buildable(row) and all(r["status"] == "pass" for r in applicable(row).values())


def failed(row: dict) -> list[str]:
    return [s for s, r in applicable(row).items() if r["status"] in FAILURES]


def cause_of(reason: str) -> str:
    """A failure reason without the numbers and names that differ per model."""
    text = reason.splitlines()[0] if reason else ""
    text = re.sub(r"\b[A-Z]\w*?(Config|Model|For[A-Z]\w*)\b", "<class>", text)
    text = re.sub(r"'[^']*'", "'…'", text)
    text = re.sub(r"\d+(\.\d+)?(e-?\d+)?", "N", text)
    return text[:160]


def causes(rows: dict[str, dict]) -> dict[tuple[str, str, str], list[str]]:
    """(stage, status, cause) -> models, for every stage that did not pass."""
    found: dict[tuple[str, str, str], list[str]] = {}
    for key in sorted(rows):
        row = rows[key]
        if not buildable(row):
            continue
        for stage, result in applicable(row).items():
            if result["status"] != "pass":
                found.setdefault((stage, result["status"], cause_of(result["reason"])), []).append(
                    key
                )
    return found


def render(rows: dict[str, dict], total: int | None = None) -> str:
    total = len(rows) if total is None else total
    built = [r for r in rows.values() if buildable(r)]
    good = [r for r in built if passes_all(r)]
    statuses = Counter(r["status"] for row in built for s, r in applicable(row).items())
    lines = [
        "## Transformers architectures",
        "",
        f"`python bench/coverage.py --write` (transformers {_transformers_version()}). "
        "Every model type of transformers' causal-LM, seq2seq-LM, masked-LM and "
        "image-classification mappings (one row per type, the first of those heads it "
        "has), built small from its default config by one shrinking rule "
        "(bench/coverage_shrink.py) with random weights, each run in its own process "
        "forked from a warm parent, two at a time, each stage under a timeout. Stages: "
        "`analyze` (derived inputs); `user-inputs` (a tokenizer-style `BatchEncoding` "
        "with `attention_mask`, no `use_cache`); `widths` (a random half of every "
        "MLP, expert-MLP, expert and channel group); `kv-groups` (3 of 4 KV groups: "
        "a head count the config cannot divide); `queries` (half the queries in every "
        "KV group); `block` (the last removable block); `hidden` (a quarter of the "
        "hidden size: inexact by nature, must be reported so); `generate` (greedy, KV "
        "cache, tokens equal to the masked original's); `save-load` (`surgeon.save` "
        "then `surgeon.load`, outputs equal); `from-pretrained` (a uniform cut of the "
        "MLPs and expert MLPs loads with plain `from_pretrained`); `prune` "
        "(`surgeon.prune(model, 0.3, criterion='magnitude')`). Widths, KV groups, "
        "queries and the block are cut in one plan first and, when that fails, one "
        "by one. An outcome is `pass`, "
        "`refused` (a SurgeonError naming the module or op: up front, or rolled back), "
        "`mismatch` (returned, then verification or the comparison failed), `crash` "
        "(any other exception) or `timeout`; `n/a` when there is nothing of that kind. "
        "A cut whose only difference comes from groups `verify` lists as inexact by "
        "nature (norm statistics over the cut axis) passes, and says so.",
        "",
        f"- model types in those mappings: {total}; run so far: {len(rows)}; "
        f"buildable small on the CPU: {len(built)}. The cache "
        "(bench/results/coverage.jsonl) records the commit each row ran at (`+`: "
        "with uncommitted work in the tree); rows without one ran before commit "
        "43f9325. `--rerun-failed` re-runs rows that did not pass everything.",
        f"- pass every stage that applies: {len(good)} of {len(built)} "
        f"({len(good) / max(1, len(built)):.1%})",
        "- stage outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())),
        f"- models with a mismatch: {_count_with(built, ('mismatch',))}; "
        f"with a crash or timeout: {_count_with(built, ('crash', 'timeout'))}",
        "",
        "| stage | pass | refused | mismatch | crash | timeout | n/a |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage in STAGES:
        counts = Counter(r["stages"].get(stage, {}).get("status", "n/a") for r in built)
        lines.append(
            f"| {stage} | {counts['pass']}/{len(built) - counts['n/a']} | "
            f"{counts['refused']} | {counts['mismatch']} | {counts['crash']} | "
            f"{counts['timeout']} | {counts['n/a']} |"
        )
    lines += [
        "",
        "### Failure causes",
        "",
        "| stage | outcome | cause | models | example |",
        "|---|---|---|---|---|",
    ]
    for (stage, status, cause), models in sorted(causes(rows).items(), key=lambda kv: -len(kv[1])):
        lines.append(f"| {stage} | {status} | {_cell(cause)} | {len(models)} | {models[0]} |")
    lines += [
        "",
        "### Per model",
        "",
        "| model | class | " + " | ".join(STAGES) + " | commit |",
        "|---|---|" + "---|" * len(STAGES) + "---|",
    ]
    symbol = {
        "pass": "ok",
        "n/a": "-",
        "refused": "refused",
        "mismatch": "MISMATCH",
        "crash": "CRASH",
        "timeout": "TIMEOUT",
    }
    for key in sorted(rows):
        row = rows[key]
        if not buildable(row):
            continue
        cells = [symbol.get(row["stages"].get(s, {}).get("status", "n/a"), "?") for s in STAGES]
        commit = row.get("commit") or "-"
        lines.append(f"| {key} | {row['class']} | " + " | ".join(cells) + f" | {commit} |")
    unbuilt = sorted(k for k, r in rows.items() if not buildable(r))
    lines += [
        "",
        f"### Not buildable small ({len(unbuilt)})",
        "",
        "Their configs refuse the shrunk sizes or need inputs and packages the sweep "
        "does not have; each with the first line of its error:",
        "",
    ]
    for key in unbuilt:
        reason = rows[key]["stages"].get("build", {}).get("reason", "")
        lines.append(f"- {key}: {_cell(reason.splitlines()[0] if reason else '')[:160]}")
    return "\n".join(lines) + "\n"


def _count_with(rows: list[dict], statuses: tuple[str, ...]) -> int:
    return sum(1 for r in rows if any(x["status"] in statuses for x in applicable(r).values()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
