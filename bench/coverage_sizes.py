"""The coverage sweep's target sizes: one per config attribute name (or name
suffix), the lists and aliases that name the same widths, and the counts
(layers, experts) the rule lowers.
"""

from __future__ import annotations

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


def by_suffix(name: str) -> int | None:
    return next((target for suffix, target in SUFFIXES if name.endswith(suffix)), None)


def layer_count(values: dict) -> int | None:
    return next((values[k] for k in LAYER_NAMES if isinstance(values.get(k), int)), None)
