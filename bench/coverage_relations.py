"""Relations a family states between its config fields, kept when the sweep
shrinks each field alone: aliases of one width, head sums, a base scale,
Mamba heads, head groups, per-stage lists, a complete experts setting.
"""

from __future__ import annotations

import math

from coverage_sizes import ALIASES, EXPERT_COUNTS, EXPERT_WIDTHS, HEADS, HIDDEN, MLP, SCALARS


def complete_experts(out: dict) -> None:
    """A config that states an expert width is a MoE: expert counts, top-k and
    shared experts it leaves None get their targets (a top-k of None crashes the
    router; a None expert count builds no experts)."""
    if not any(isinstance(out.get(k), int) and out[k] > 0 for k in EXPERT_WIDTHS):
        return
    for name in EXPERT_COUNTS:
        if name in out and out[name] is None:
            out[name] = SCALARS[name]


def keep_aliases(out: dict, before: dict) -> None:
    """A field of a family's other name (``ALIASES``) that equals the family's
    field in the default follows it."""
    for alias, names in ALIASES.items():
        value = before.get(alias)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        for name in names:
            if before.get(name) == value and isinstance(out.get(name), int):
                out[alias] = out[name]
                break


def keep_head_sums(out: dict, before: dict) -> None:
    """A prefixed head width that the default states as the sum of the two head
    widths named with the same prefix (MLA's ``qk_head_dim = qk_nope_head_dim +
    qk_rope_head_dim``) stays their sum."""
    for name, total in before.items():
        prefix = name.removesuffix("head_dim")
        if prefix in ("", name) or not isinstance(total, int) or isinstance(total, bool):
            continue
        parts = [
            k
            for k, v in before.items()
            if k != name and k.startswith(prefix) and k.endswith("head_dim") and isinstance(v, int)
        ]
        if (
            len(parts) == 2
            and before[parts[0]] + before[parts[1]] == total
            and all(isinstance(out.get(k), int) for k in parts)
        ):
            out[name] = out[parts[0]] + out[parts[1]]


def base_scale(out: dict, before: dict) -> None:
    """A compound-scaled config (EfficientNet: ``width_coefficient``,
    ``depth_coefficient`` over base stage widths and block repeats) is built at
    its base scale (coefficients at most 1; one block per stage, as stage depth
    lists are): the model multiplies its base widths by the coefficient, and a
    width the config states already multiplied (EfficientNet's ``hidden_dim``,
    its top convolution's 1280 base) is divided alike, not shrunk on its own."""
    coefficient = before.get("width_coefficient")
    if isinstance(coefficient, (int, float)) and not isinstance(coefficient, bool):
        scale = min(coefficient, 1.0)
        for name, value in before.items():
            if SCALARS.get(name) in (HIDDEN, MLP) and isinstance(value, int) and value > 0:
                out[name] = max(1, round(value * scale / coefficient))
        out["width_coefficient"] = scale
    depth = before.get("depth_coefficient")
    if isinstance(depth, (int, float)) and not isinstance(depth, bool):
        out["depth_coefficient"] = min(depth, 1.0)


# Mamba-2 head width and head count, each family with and without a prefix
# (``mamba_d_head``/``mamba_n_heads``, ``head_dim``/``num_heads``,
# ``mamba_headdim``/``n_mamba_heads``)
MAMBA_HEADS = (("d_head", "n_heads"), ("head_dim", "num_heads"), ("headdim", "n_{}heads"))


def keep_mamba_heads(out: dict, before: dict) -> None:
    """Mamba-2 heads: where ``head width x heads == expand x hidden`` held
    before (a validated relation in Mamba-2 and Bamba-style configs), it holds
    after, with the head count lowered like an attention head count (and the
    B/C group count dividing it)."""
    hidden_before, hidden = before.get("hidden_size"), out.get("hidden_size")
    if not isinstance(hidden_before, int) or not isinstance(hidden, int):
        return
    for width_name, count_name in MAMBA_HEADS:
        for name, width in before.items():
            if not name.endswith(width_name) or not isinstance(width, int):
                continue
            prefix = name[: -len(width_name)]
            # the prefix before the count's name, or inside it (``n_mamba_heads``)
            count = count_name.format(prefix) if "{}" in count_name else prefix + count_name
            n_heads = before.get(count)
            expand = before.get(prefix + "expand")
            if not isinstance(n_heads, int) or not isinstance(expand, int):
                continue
            if width * n_heads != expand * hidden_before:
                continue
            heads = math.gcd(min(n_heads, HEADS), expand * hidden)
            out[count], out[name] = heads, expand * hidden // heads
            groups = before.get(prefix + "n_groups")  # B/C groups divide the heads
            if isinstance(groups, int) and groups > 0 and heads % groups:
                out[prefix + "n_groups"] = math.gcd(heads, groups)


# counts of groups of attention heads (DeepSeek-V4's grouped output projection
# reshapes its heads into o_groups rows): they divided the heads, and still do
HEAD_GROUPS = ("o_groups",)


def keep_head_groups(out: dict, before: dict) -> None:
    heads_before, heads = before.get("num_attention_heads"), out.get("num_attention_heads")
    if not isinstance(heads_before, int) or not isinstance(heads, int) or heads <= 0:
        return
    for name in HEAD_GROUPS:
        groups = out.get(name)
        if isinstance(groups, int) and groups > 0 and heads_before % groups == 0 and heads % groups:
            out[name] = math.gcd(heads, groups)


def keep_list_relations(out: dict, before: dict) -> None:
    """Lists of sizes tied to a shrunk scalar (Reformer's axial position
    embeddings): one that summed to the hidden size sums to the new one (each
    part scaled alike), one whose product was the position count multiplies to
    the new count (factors halved in turn)."""
    for name, value in before.items():
        if not (isinstance(value, list) and len(value) > 1):
            continue
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            continue
        for scalar in ("hidden_size", "max_position_embeddings"):
            old, new = before.get(scalar), out.get(scalar)
            if not isinstance(old, int) or not isinstance(new, int) or new >= old:
                continue
            if scalar == "hidden_size" and sum(value) == old and old % new == 0:
                parts = [v * new // old for v in value]
                if sum(parts) == new and all(parts):
                    out[name] = parts
            elif scalar == "max_position_embeddings" and math.prod(value) == old:
                factors, i = list(value), 0
                while math.prod(factors) > new and any(f % 2 == 0 for f in factors):
                    if factors[i % len(factors)] % 2 == 0:
                        factors[i % len(factors)] //= 2
                    i += 1
                if math.prod(factors) == new:
                    out[name] = factors
