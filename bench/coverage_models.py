"""Which transformers architectures the coverage sweep builds, and how it makes
them small.

Discovery walks transformers' own auto mappings, so a new transformers release
adds rows by itself. Shrinking is one generic rule over config attribute
*names*, applied to the config and every sub-config (text, vision, encoder,
decoder...): no per-model table. Names that mean the same thing across
families (``hidden_size``/``d_model``/``n_embd``, ``num_attention_heads``/
``n_head``, ``intermediate_size``/``ffn_dim``/``d_ff``...) share one target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Task heads in order of preference: one row per model type, built with the
# first mapping that has it (a causal LM exercises generate; a base model is
# the last resort).
MAPPINGS = (
    ("causal-lm", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"),
    ("seq2seq-lm", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES"),
    ("masked-lm", "MODEL_FOR_MASKED_LM_MAPPING_NAMES"),
    ("image-classification", "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES"),
    ("base", "MODEL_MAPPING_NAMES"),
)

HIDDEN, HEAD_DIM, HEADS, KV_HEADS, MLP, EXPERT_MLP = 64, 16, 4, 2, 96, 32
LAYERS, EXPERTS, TOP_K, VOCAB, POSITIONS, IMAGE = 2, 4, 2, 256, 256, 224

# attribute name -> target (values are only ever lowered, never raised)
SCALARS: dict[str, int] = {
    **dict.fromkeys(
        [
            "hidden_size",
            "d_model",
            "n_embd",
            "embed_dim",
            "dim",
            "word_embed_proj_dim",
            "embedding_size",
            "d_embed",
            "projection_dim",
            "text_embed_dim",
            "hidden_dim_model",
            "hidden_size_global",
            "audio_hidden_size",
        ],
        HIDDEN,
    ),
    **dict.fromkeys(
        [
            "intermediate_size",
            "ffn_dim",
            "n_inner",
            "d_ff",
            "hidden_dim",
            "d_inner",
            "ffn_hidden_size",
            "encoder_ffn_dim",
            "decoder_ffn_dim",
            "mlp_dim",
        ],
        MLP,
    ),
    **dict.fromkeys(
        [
            "moe_intermediate_size",
            "shared_expert_intermediate_size",
            "expert_intermediate_size",
            "moe_ffn_hidden_size",
            "expert_ffn_hidden_size",
        ],
        EXPERT_MLP,
    ),
    **dict.fromkeys(
        [
            "num_hidden_layers",
            "n_layer",
            "n_layers",
            "num_layers",
            "encoder_layers",
            "decoder_layers",
            "num_decoder_layers",
            "num_encoder_layers",
        ],
        LAYERS,
    ),
    **dict.fromkeys(
        [
            "num_attention_heads",
            "n_head",
            "n_heads",
            "num_heads",
            "encoder_attention_heads",
            "decoder_attention_heads",
        ],
        HEADS,
    ),
    **dict.fromkeys(["head_dim", "attention_head_dim", "kv_channels"], HEAD_DIM),
    **dict.fromkeys(
        [
            "num_experts",
            "num_local_experts",
            "n_routed_experts",
            "moe_num_experts",
            "zero_expert_num",  # LongCat-Flash's identity experts, routed beside the others
        ],
        EXPERTS,
    ),
    **dict.fromkeys(
        [
            "num_experts_per_tok",
            "num_experts_per_token",
            "moe_topk",
            "num_selected_experts",
            "moe_k",
        ],
        TOP_K,
    ),
    **dict.fromkeys(["n_shared_experts", "num_shared_experts"], 1),
    # expert groups of group-limited routing (DeepSeek): 2 groups of 2, top-1 group
    "n_group": 2,
    # MLA: query and KV latent ranks differ in real models (1536 / 512), and the
    # attribute update tells them apart by value
    "q_lora_rank": 48,
    "topk_group": 1,
    # dense layers before the first MoE layer: keep one so a MoE layer remains
    **dict.fromkeys(["first_k_dense_replace", "num_dense_layers"], 1),
    "vocab_size": VOCAB,
    "max_position_embeddings": POSITIONS,
    "n_positions": POSITIONS,
    "image_size": IMAGE,
}
LAYER_NAMES = ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "num_layers_per_stack")
KV_NAMES = ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "multi_query_group_num")
TOKEN_IDS = (
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "decoder_start_token_id",
    "sep_token_id",
    "cls_token_id",
    "mask_token_id",
    "unk_token_id",
    "blank_token_id",  # CTC's blank class
    "yes_token_index",  # ShieldGemma 2 reads these two logits
    "no_token_index",
)
LIST_WIDTHS = ("hidden_sizes", "embed_dims", "dims", "embedding_sizes")
# names of the hidden-size and layer-count families that some configs fill from
# the family's main name (xLSTM: embedding_dim, num_blocks); elsewhere they are
# other widths (EmbeddingGemma's output width), so they follow only where the
# default holds them equal
ALIASES = {
    "embedding_dim": ("hidden_size", "d_model"),
    "num_blocks": LAYER_NAMES,
}
LIST_DEPTHS = ("depths", "num_layers_per_stage", "num_block_repeats")


# name endings: MLA's q/kv LoRA ranks and per-part head widths, rotary widths,
# extra embedding tables (BLT's hash n-gram vocabularies)
SUFFIXES = (
    ("lora_rank", 32),
    ("head_dim", HEAD_DIM),
    ("rotary_dim", HEAD_DIM // 2),
    ("_vocab", VOCAB),
)
EXPERT_WIDTHS = ("moe_intermediate_size", "expert_intermediate_size", "moe_ffn_hidden_size")
# a MoE's expert count, top-k and shared experts: a default config that states the
# expert width but leaves these None builds a MoE without routing (top-k None)
EXPERT_COUNTS = (
    "num_experts",
    "num_local_experts",
    "n_routed_experts",
    "moe_num_experts",
    "num_experts_per_tok",
    "moe_topk",
    "num_selected_experts",
    "moe_k",
    "n_shared_experts",
    "num_shared_experts",
)


def _by_suffix(name: str) -> int | None:
    return next((target for suffix, target in SUFFIXES if name.endswith(suffix)), None)


@dataclass(frozen=True)
class Architecture:
    model_type: str
    class_name: str
    task: str  # which mapping it came from


def discover() -> list[Architecture]:
    """One architecture per model type, from the first mapping that has it."""
    from transformers.models.auto import modeling_auto

    chosen: dict[str, Architecture] = {}
    for task, mapping_name in MAPPINGS:
        for model_type, class_name in getattr(modeling_auto, mapping_name).items():
            if isinstance(class_name, (tuple, list)):
                class_name = class_name[0]
            chosen.setdefault(model_type, Architecture(model_type, class_name, task))
    return sorted(chosen.values(), key=lambda a: a.model_type)


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
        elif value > 0 and (target := _by_suffix(name)) is not None:
            out[name] = min(value, target)
    _keep_aliases(out, values)
    _keep_head_sums(out, values)
    _base_scale(out, values)
    _shrink_kv_heads(out, values, heads_before)
    _complete_experts(out)
    _keep_mamba_heads(out, values)
    _keep_head_groups(out, values)
    _keep_list_relations(out, values)
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


def _complete_experts(out: dict) -> None:
    """A config that states an expert width is a MoE: expert counts, top-k and
    shared experts it leaves None get their targets (a top-k of None crashes the
    router; a None expert count builds no experts)."""
    if not any(isinstance(out.get(k), int) and out[k] > 0 for k in EXPERT_WIDTHS):
        return
    for name in EXPERT_COUNTS:
        if name in out and out[name] is None:
            out[name] = SCALARS[name]


def _keep_aliases(out: dict, before: dict) -> None:
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


def _keep_head_sums(out: dict, before: dict) -> None:
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


def _base_scale(out: dict, before: dict) -> None:
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


def _keep_mamba_heads(out: dict, before: dict) -> None:
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


def _keep_head_groups(out: dict, before: dict) -> None:
    heads_before, heads = before.get("num_attention_heads"), out.get("num_attention_heads")
    if not isinstance(heads_before, int) or not isinstance(heads, int) or heads <= 0:
        return
    for name in HEAD_GROUPS:
        groups = out.get(name)
        if isinstance(groups, int) and groups > 0 and heads_before % groups == 0 and heads % groups:
            out[name] = math.gcd(heads, groups)


def _keep_list_relations(out: dict, before: dict) -> None:
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


def _layer_count(values: dict) -> int | None:
    return next((values[k] for k in LAYER_NAMES if isinstance(values.get(k), int)), None)


def _shrink_per_layer(out: dict, before: dict) -> None:
    """Per-layer lists (``layer_types``, per-layer widths) keep their first
    layers; per-layer overrides and backbone stage selections beyond the new
    depth are dropped (the model falls back to its default: the last stage)."""
    old, new = _layer_count(before), _layer_count(out)
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
    layers = _layer_count(out)
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


class OwnForwardError(RuntimeError):
    """The model's own forward refuses its default config: not buildable small."""


def build(arch: Architecture):
    """The small random-init model of ``arch`` (eval mode, seed 0); where the
    shrunk default config does not build, or the model's own forward refuses it,
    the same config ``complete``d."""
    import transformers
    from transformers import AutoConfig

    model_class = getattr(transformers, arch.class_name)
    config_class = getattr(model_class, "config_class", None)
    config = config_class() if config_class else AutoConfig.for_model(arch.model_type)
    small = shrink(config.to_dict())
    small.pop("model_type", None)
    try:
        return _instantiate(model_class, type(config), small)
    except TimeoutError:
        raise
    except Exception as error:  # noqa: BLE001 - retried once with the unset fields filled
        completed = complete(small, config.to_dict(), decoder=arch.task == "causal-lm")
        if completed == small:
            raise
        try:
            return _instantiate(model_class, type(config), completed)
        except Exception as again:
            raise again from error


def _instantiate(model_class, config_class, values: dict):
    import torch

    config = config_class.from_dict(values)
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = model_class(config)
    _check_own_forward(model.eval())
    return model


def _check_own_forward(model) -> None:
    """A plain forward on the sweep's example inputs, as any user runs it: where
    the model's own code fails on what its default config leaves, whatever the
    inputs (a field left None reaching an op that needs a value: DBRX's
    ``clip_qkv``; the cache the model builds for itself refusing the config's
    layers), the model is not buildable.
    Size mismatches, missing inputs and other errors are left to the stages."""
    import traceback

    import torch

    from surgeon.analyzers.example_inputs import example_inputs

    try:
        args, kwargs = example_inputs(model)
    except Exception:  # noqa: BLE001 - deriving inputs is a stage of its own (analyze)
        return
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    except (ValueError, RuntimeError, IndexError) as error:
        message, frames = str(error), traceback.extract_tb(error.__traceback__)
        left_none = isinstance(error, RuntimeError) and "must not be None" in message
        own_cache = isinstance(error, ValueError) and frames[-1].filename.endswith("cache_utils.py")
        # an index the code fixes beyond the shrunk tables (ShieldGemma 2 reads two
        # logits by the full vocabulary's token ids)
        fixed_index = isinstance(error, IndexError)
        if left_none or own_cache or fixed_index:
            reason = f"its own forward fails on the default config: {type(error).__name__}: {error}"
            raise OwnForwardError(reason) from error
    except Exception:  # noqa: BLE001, S110 - the stages report other failures
        pass
