"""How the coverage sweep makes a default config small: one generic rule over
config attribute *names*, applied to the config and every sub-config (text,
vision, encoder, decoder...), no per-model table. Names that mean the same
thing across families (``hidden_size``/``d_model``/``n_embd``,
``num_attention_heads``/``n_head``, ``intermediate_size``/``ffn_dim``/
``d_ff``...) share one target; the relations a family states between its
fields (head sums, Mamba heads, per-stage lists) are kept.
"""

from __future__ import annotations

import math
from typing import Any

from coverage_relations import (
    base_scale,
    complete_experts,
    keep_aliases,
    keep_head_groups,
    keep_head_sums,
    keep_list_relations,
    keep_mamba_heads,
)
from coverage_sizes import (
    HEAD_DIM,
    KV_HEADS,
    KV_NAMES,
    LAYER_NAMES,
    LIST_DEPTHS,
    LIST_WIDTHS,
    SCALARS,
    TOKEN_IDS,
    by_suffix,
    layer_count,
)


def shrink(values: dict[str, Any]) -> dict[str, Any]:
    """The config dict with every size lowered by the one rule (recursively)."""
    out = dict(values)
    heads_before = next(
        (
            out[k]
            for k in ("num_attention_heads", "n_head", "num_heads")
            if isinstance(out.get(k), int)
        ),
        None,
    )
    staged = isinstance(values.get("depths"), list)  # num_layers = len(depths) there
    for name, value in values.items():
        if staged and name in LAYER_NAMES:
            continue
        if isinstance(value, dict) and value and "model_type" in value:
            out[name] = shrink(value)
        elif isinstance(value, bool) or not isinstance(value, int):
            continue
        elif name in SCALARS and value > 0:
            out[name] = min(value, SCALARS[name])
        elif value > 0 and (target := by_suffix(name)) is not None:
            out[name] = min(value, target)
    keep_aliases(out, values)
    keep_head_sums(out, values)
    base_scale(out, values)
    _shrink_kv_heads(out, values, heads_before)
    complete_experts(out)
    keep_mamba_heads(out, values)
    keep_head_groups(out, values)
    keep_list_relations(out, values)
    _shrink_lists(out)
    _align_widths(out)
    vocab = out.get("vocab_size")
    if isinstance(vocab, int) and vocab > 0:
        for name in TOKEN_IDS:
            token = out.get(name)
            if isinstance(token, int) and token >= vocab:
                out[name] = vocab - 1 - (TOKEN_IDS.index(name) % 8)
            elif isinstance(token, list):
                out[name] = [t if t < vocab else vocab - 1 for t in token]
    _shrink_per_layer(out, values)
    # a default choice left None beside the list of choices (X-MOD's default
    # language among its adapters' languages): the first, as a user must choose
    for name, value in values.items():
        choices = values.get(name.removeprefix("default_") + "s")
        if name.startswith("default_") and value is None and isinstance(choices, list) and choices:
            out[name] = choices[0]
    return out


def _shrink_per_layer(out: dict, before: dict) -> None:
    """Per-layer lists (``layer_types``, per-layer widths) keep their first
    layers; per-layer overrides and backbone stage selections beyond the new
    depth are dropped (the model falls back to its default: the last stage)."""
    old, new = layer_count(before), layer_count(out)
    if old is None or new is None or new >= old:
        return
    for name, value in before.items():
        if isinstance(value, list) and len(value) == old:
            out[name] = value[:new]
    if isinstance(before.get("per_layer_config"), dict):
        out["per_layer_config"] = {
            k: v for k, v in before["per_layer_config"].items() if int(k) < new
        }
    if "out_features" in out:
        out["out_features"], out["out_indices"] = None, None
    elif isinstance(before.get("out_indices"), list):
        # layer indices alone (no stage names, no default to fall back on): those
        # within the new depth, else the last layer
        kept = [i for i in before["out_indices"] if isinstance(i, int) and 0 <= i < new]
        out["out_indices"] = kept or [new - 1]
    # layers that reuse an earlier layer's cache (Gemma 3n/4 KV sharing) stay
    # fewer than the layers, so one layer of each kept type still produces it
    for name, shared in before.items():
        if name.endswith("kv_shared_layers") and isinstance(shared, int) and shared > 0:
            out[name] = min(shared, new - 1)
    # GPT-Neo states its layer pattern as [[pattern, repeats]]: the only
    # per-model exception (its validator requires repeats x len(pattern) == layers)
    if isinstance(before.get("attention_types"), list):
        pattern = before["attention_types"][0][0]
        out["attention_types"] = [[pattern, max(1, new // len(pattern))]]


def _shrink_kv_heads(out: dict, before: dict, heads_before: int | None) -> None:
    heads = next(
        (
            out[k]
            for k in ("num_attention_heads", "n_head", "num_heads")
            if isinstance(out.get(k), int)
        ),
        None,
    )
    for name in KV_NAMES:
        kv = before.get(name)
        if not isinstance(kv, int) or isinstance(kv, bool) or heads is None:
            continue
        # multi-head stays multi-head, multi-query stays multi-query; GQA keeps groups
        out[name] = heads if kv == heads_before else min(kv, KV_HEADS)
        if heads % out[name]:
            out[name] = 1


def _shrink_lists(out: dict) -> None:
    """Stage lists (CNNs, hierarchical ViTs): one block per stage, widths
    divided by one power of two so the first stage is at most 32 wide (or the
    largest power that the head count still divides every width by, or that
    keeps tied channel counts at least 8 wide); a
    group-norm group count is divided by the same power (channels per group
    stay, so the groups still divide every width)."""
    for name in LIST_DEPTHS:
        if isinstance(out.get(name), list):
            out[name] = [min(d, 1) if isinstance(d, int) else d for d in out[name]]
    for name in LIST_WIDTHS:
        widths = out.get(name)
        if isinstance(widths, list) and widths and all(isinstance(w, int) for w in widths):
            factor = 2 ** max(0, math.ceil(math.log2(max(widths[0], 1) / 32)))
            heads = out.get("num_attention_heads")
            if isinstance(heads, int) and heads > 0 and widths[0] % heads == 0:
                # stages that are transformers (MobileViT): widths stay divisible
                while factor > 1 and any((w // factor) % heads for w in widths):
                    factor //= 2
            # tied channel counts stay at least 8 wide (a stem halves its width
            # inside: HGNet-V2), so that a cut to half still keeps 2 channels
            tied = _tied_channels(out, widths)
            image = out.get("num_channels")
            values = [
                v
                for k in tied
                for v in (out[k] if isinstance(out[k], list) else [out[k]])
                if v != image
            ]
            while factor > 1 and values and min(values) // factor < 8:
                factor //= 2
            out[name] = [max(1, w // factor) for w in widths]
            _scale_channels(out, tied, factor)
            groups = out.get("num_groups")
            if isinstance(groups, int) and not isinstance(groups, bool) and groups > 1:
                out["num_groups"] = max(1, groups // factor)


def _tied_channels(out: dict, widths: list[int]) -> list[str]:
    """Channel counts stated beside the stage ``widths`` (a stem's output,
    per-stage in/mid/out channels: TextNet, HGNet-V2) are the same widths under
    other names where a value ties them to the stage widths, directly or through
    another tied channel field (one block's output is the next one's input);
    the input image channels (``num_channels``) are not widths."""
    image = out.get("num_channels")
    fields = {}
    for name, value in out.items():
        if not name.endswith("channels") or name.endswith("num_channels"):
            continue
        values = value if isinstance(value, list) else [value]
        if values and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            fields[name] = set(values) - {image}
    tied: list[str] = []
    tied_values = set(widths)
    while new := [k for k, v in fields.items() if k not in tied and v & tied_values]:
        tied += new
        tied_values |= {v for k in new for v in fields[k]}
    return tied


def _scale_channels(out: dict, tied: list[str], factor: int) -> None:
    """The tied channel counts divided like the stage widths, except entries
    equal to the input image channels (a stem list starts with them)."""
    image = out.get("num_channels")
    for name in tied:
        value = out[name]
        if isinstance(value, list):
            out[name] = [v if v == image else max(1, v // factor) for v in value]
        else:
            out[name] = max(1, value // factor)


def _align_widths(out: dict) -> None:
    """Keep ``hidden = heads x head_dim`` where the config states a head size,
    and a hidden width that a head-count list divides (Swin-style stages)."""
    heads = out.get("num_heads")
    width = next((k for k in ("embed_dim", "hidden_size") if isinstance(out.get(k), int)), None)
    if isinstance(heads, list) and heads and width:
        out["num_heads"] = [min(h, 2 ** (i + 1)) for i, h in enumerate(heads)]
        out[width] = HEAD_DIM * out["num_heads"][0]
    heads = next(
        (
            out[k]
            for k in ("num_attention_heads", "n_head", "n_heads")
            if isinstance(out.get(k), int)
        ),
        None,
    )
    for name in ("hidden_size", "d_model", "n_embd", "dim"):
        if heads and isinstance(out.get(name), int) and out[name] % heads:
            out[name] = heads * HEAD_DIM


def complete(
    values: dict[str, Any],
    before: dict | None = None,
    parent: dict | None = None,
    decoder: bool = False,
) -> dict[str, Any]:
    """The shrunk config dict ``values`` (of the default config ``before``) with
    what the default leaves unset or the shrinking left out filled in
    (recursively): sizes left None (``head_dim`` from ``hidden / heads``, KV
    heads as many as heads, others their target), a padding id left None
    (embeddings that mask padding by it), ``is_decoder`` for a causal-LM head
    (``decoder``: Reformer's asserts it), ``layer_types`` left None (every layer
    full attention), every kind of layer the full ``layer_types`` had (validators
    that want one attention layer in a hybrid), a sub-config's ``rope_theta``
    from its parent, and a rope setting for each layer type of a per-layer-type
    ``rope_parameters``.

    Only for a model that does not build without it: elsewhere None means "derive
    it" and the model does so, a layer kind left out is not missed, and the
    cached rows were built without this."""
    before = before or {}
    out = dict(values)
    if decoder and out.get("is_decoder") is False:
        out["is_decoder"] = True
    for name, value in values.items():
        if isinstance(value, dict) and value and "model_type" in value:
            inner = before.get(name)
            out[name] = complete(value, inner if isinstance(inner, dict) else None, out)
        elif value is None and name in SCALARS:
            out[name] = SCALARS[name]
    heads, hidden = out.get("num_attention_heads"), out.get("hidden_size")
    if "head_dim" in out and out["head_dim"] is None and isinstance(heads, int) and heads > 0:
        out["head_dim"] = hidden // heads if isinstance(hidden, int) else HEAD_DIM
    for name in KV_NAMES:
        if name in out and out[name] is None and isinstance(heads, int):
            out[name] = heads
    # XLNet's validator ties the head width to width / heads (Funnel states the
    # same relation, builds without it, and keeps its shrunk head width)
    width, n_head = out.get("d_model"), out.get("n_head")
    if isinstance(out.get("d_head"), int) and isinstance(width, int) and isinstance(n_head, int):
        out["d_head"] = width // n_head
    layers = layer_count(out)
    if "layer_types" in out and out["layer_types"] is None and isinstance(layers, int):
        out["layer_types"] = ["full_attention"] * layers
    kinds, full = out.get("layer_types"), before.get("layer_types")
    if isinstance(kinds, list) and kinds and isinstance(full, list):
        missing = [k for k in dict.fromkeys(full) if k not in kinds]
        if missing and len(missing) < len(kinds):
            out["layer_types"] = kinds[: len(kinds) - len(missing)] + missing
    if "pad_token_id" in out and out["pad_token_id"] is None:
        out["pad_token_id"] = 0  # the lowest: RoBERTa-style positions count on from it
    inherited = (parent or {}).get("rope_parameters")
    if (
        parent is not None
        and "rope_theta" not in out
        and "rope_parameters" not in out
        and isinstance(inherited, dict)
        and isinstance(inherited.get("rope_theta"), (int, float))
    ):
        out["rope_theta"] = inherited["rope_theta"]
    rope, types = out.get("rope_parameters"), out.get("layer_types")
    if isinstance(rope, dict) and "rope_type" not in rope and isinstance(types, list):
        theta = out.get("rope_theta") if isinstance(out.get("rope_theta"), (int, float)) else 1e4
        out["rope_parameters"] = {
            **{t: {"rope_type": "default", "rope_theta": theta} for t in types if t},
            **rope,
        }
    return out
