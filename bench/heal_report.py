"""The "Healing" section of docs/benchmarks.md, rendered from bench/heal.py's rows."""

from __future__ import annotations

BUDGETS = (1_000_000, 5_000_000, 10_000_000, 20_000_000)
GOALS = (("20% widths", 5_000_000, 1.00), ("50% widths", 10_000_000, 1.04))


def _cells(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["variant"], r["label"], r["tokens"]): r for r in rows if "tokens" in r}


def _table(rows: list[dict]) -> list[str]:
    cells = _cells([r for r in rows if r["group"] != "sweep"])
    lines = [
        "| cut | recipe | params | before | 1M tokens | 5M | 10M | 20M | tokens/s (20M run) "
        "| peak GPU memory |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    seen = []
    for r in rows:
        key = (r.get("variant"), r.get("label"))
        if r["group"] in ("sweep", "chosen") or key in seen:
            continue
        seen.append(key)
        runs = [cells.get((*key, n)) for n in BUDGETS]
        last = next((x for x in reversed(runs) if x), None)
        before = next((x["before_ratio"] for x in runs if x and x["before_ratio"]), None)
        lines.append(
            f"| {key[0]} ({last['fixture']}) | {key[1]} | {last['params'] / 1e6:.1f}M | "
            + (f"{before:.3f}x" if before else "-")
            + " | "
            + " | ".join(f"{x['ratio']:.3f}x" if x else "-" for x in runs)
            + f" | {last['tokens_per_second']:,.0f} | {last['peak_gib']:.2f} GiB |"
        )
    return lines


def _sweep(rows: list[dict]) -> list[str]:
    sweep = [r for r in rows if r["group"] == "sweep"]
    if not sweep:
        return []
    lines = [
        "| setting | options | held-out training text ppl | valid.txt vs dense | tokens/s |",
        "|---|---|---|---|---|",
    ]
    for r in sweep:
        options = ", ".join(f"{k}={v}" for k, v in r["options"].items())
        lines.append(
            f"| {r['label']} | {options} | {r['held_out_train_ppl']:.3f} | {r['ratio']:.3f}x "
            f"| {r['tokens_per_second']:,.0f} |"
        )
    return lines


def _goals(rows: list[dict]) -> list[str]:
    cells = _cells(rows)
    out = []
    for variant, tokens, goal in GOALS:
        row = cells.get((variant, "default recipe", tokens))
        if row is None:
            out.append(f"- {variant} within {tokens / 1e6:.0f}M tokens: not measured.")
            continue
        verdict = "met" if row["ratio"] <= goal + 5e-4 else "not met"
        out.append(
            f"- {variant} within {tokens / 1e6:.0f}M tokens: {row['ratio']:.3f}x dense "
            f"(goal {goal:.2f}x): {verdict}."
        )
    return out


def section(rows: list[dict], command: str) -> str:
    measured = [r for r in rows if "device" in r]
    first = measured[0] if measured else {}
    chosen = next((r for r in rows if r["group"] == "chosen"), None)
    text = [
        "## Healing",
        "",
        "Recovery of pruned fixtures by `surgeon.heal`: logit KL to the dense model (the "
        "teacher) on train.txt.xz, then perplexity on every 256-token window of valid.txt "
        "(float32) relative to the dense model. Each cell is its own run of that many "
        "tokens (the learning-rate schedule spans the run). Cuts: `surgeon.prune` with "
        "`RECOMMENDED` (FLAP scores, uniform MLP widths, refit with an intercept); "
        "`layers=auto` also removes the whole layers the planner's default picks.",
        "",
        f"Machine: one {first.get('device', '?')}, torch {first.get('torch', '?')}, "
        f"transformers {first.get('transformers', '?')}; bf16 autocast, AdamW.",
        "",
        *_table(rows),
        "",
        "Goals from issue 13:",
        *_goals(rows),
    ]
    sweep = _sweep(rows)
    if sweep:
        text += [
            "",
            "Recipe sweep (50% widths, 5M tokens, default recipe otherwise); the choice is "
            "made on the held-out tail of the training text, never on valid.txt:",
            "",
            *sweep,
        ]
    if chosen:
        text += ["", f"Chosen: {chosen['from']} ({chosen['recipe']}); `HealOptions` defaults."]
    if command:
        text += ["", f"Command: `{command}`"]
    return "\n".join(text) + "\n"
