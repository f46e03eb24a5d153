"""The "Healing" section of docs/benchmarks.md, rendered from bench/heal.py's rows."""

from __future__ import annotations

from surgeon.heal.options import DEFAULT_LORA_LR

BUDGETS = (1_000_000, 5_000_000, 10_000_000, 20_000_000)
GOALS = (("20% widths", 5_000_000, 1.00), ("50% widths", 10_000_000, 1.04))


def _cells(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["variant"], r["label"], r["tokens"]): r for r in rows if "tokens" in r}


def _table(rows: list[dict]) -> list[str]:
    cells = _cells([r for r in rows if r["group"] != "sweep"])
    lines = [
        "| cut | recipe | params | before | 1M tokens | 5M | 10M | 20M | tokens/s (longest run) "
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


def _comparisons(rows: list[dict]) -> list[str]:
    """Each other recipe against the default one cut + one heal at equal tokens."""
    cells, out = _cells(rows), []
    for label in sorted({r["label"] for r in rows if r.get("group") not in ("sweep", "chosen")}):
        if label == "default recipe":
            continue
        pairs = [
            (
                n,
                cells[("50% widths", label, n)]["ratio"],
                cells[("50% widths", "default recipe", n)]["ratio"],
            )
            for n in BUDGETS
            if ("50% widths", label, n) in cells and ("50% widths", "default recipe", n) in cells
        ]
        if pairs:
            listed = "; ".join(f"{n / 1e6:.0f}M: {a:.3f}x vs {b:.3f}x" for n, a, b in pairs)
            out.append(f"- {label} against the default at 50% widths: {listed}.")
    if any("LoRA" in r.get("label", "") and "lr" not in r.get("options", {}) for r in rows):
        out.append(
            f"- LoRA ran with rank 64, alpha 128 and its default lr {DEFAULT_LORA_LR:g}, "
            "which was not swept."
        )
    return out


def section(rows: list[dict], command: str) -> str:
    measured = [r for r in rows if "device" in r]
    first = measured[0] if measured else {}
    chosen = next((r for r in rows if r["group"] == "chosen"), None)
    text = [
        "## Healing",
        "",
        "Recovery of pruned fixtures by `surgeon.heal` with its defaults (`HealOptions`: "
        "logit KL to the dense model, AdamW, lr 1e-3, 2% warm-up then cosine to 10%, "
        "64 x 256 tokens a step, bf16 autocast) on train.txt.xz, then perplexity on every "
        "256-token window of valid.txt (float32) relative to the dense model. Each cell is "
        "its own run of that many tokens (the learning-rate schedule spans the run). Cuts: "
        "`surgeon.prune` with its defaults, the recipe `RECOMMENDED` names (FLAP scores, "
        "MLP widths spread by relative scores, least-squares refit with an intercept); "
        "`layers=auto` also removes the whole layers the planner picks for speed. Iterative: "
        "`surgeon.heal.iterative`, two cuts of 25% each with half the tokens healing after "
        "each, always from the dense teacher. `-`: not run (the session's GPU time ran out).",
        "",
        f"Machine: one {first.get('device', '?')}, torch {first.get('torch', '?')}, "
        f"transformers {first.get('transformers', '?')}; bf16 autocast, AdamW.",
        "",
        *_table(rows),
        "",
        "Goals from issue 13:",
        *_goals(rows),
        "",
        "Other recipes at equal tokens (this one vs the default):",
        *_comparisons(rows),
    ]
    sweep = _sweep(rows)
    if sweep:
        text += [
            "",
            "Recipe sweep (50% widths, 5M tokens; 32 x 512 tokens a step unless given). The "
            "choice is made on the held-out tail of the training text (64 windows the run "
            "does not train on), never on valid.txt; valid.txt is shown for reference:",
            "",
            *sweep,
        ]
    if chosen:
        text += ["", f"Chosen: {chosen['from']} ({chosen['recipe']}); `HealOptions` defaults."]
    if command:
        text += ["", f"Command: `{command}`"]
    return "\n".join(text) + "\n"
