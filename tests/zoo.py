"""Small random-init models of every architecture the analysis is tested on.

Shapes are chosen so that every size is distinct where it matters: hidden 64,
MLP 96, 8 query heads in 2 KV groups of head_dim 8, vocab 128.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import transformers as hf
from torch import nn

HIDDEN, MLP, VOCAB, LAYERS = 64, 96, 128, 2
GQA = dict(num_attention_heads=8, num_key_value_heads=2)
DECODER = dict(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=MLP, num_hidden_layers=LAYERS, **GQA
)


def tiny(model_class, **config):
    """``model_class`` built from its own config class with ``config`` (seed 0,
    eval mode): the one way tests build a small Hugging Face model by hand."""
    torch.manual_seed(0)
    return model_class(model_class.config_class(**config)).eval()


def _build(model_class, config_class, attn: str = "sdpa", **config):
    cfg = config_class(**config)
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    return model_class(cfg).eval()


HF_MODELS = {
    "llama": lambda attn="sdpa": _build(
        hf.LlamaForCausalLM, hf.LlamaConfig, attn, **DECODER, head_dim=8
    ),
    "mistral": lambda attn="sdpa": _build(
        hf.MistralForCausalLM, hf.MistralConfig, attn, **DECODER, head_dim=8
    ),
    "qwen2": lambda attn="sdpa": _build(hf.Qwen2ForCausalLM, hf.Qwen2Config, attn, **DECODER),
    "qwen3": lambda attn="sdpa": _build(
        hf.Qwen3ForCausalLM, hf.Qwen3Config, attn, **DECODER, head_dim=8
    ),
    "gemma3": lambda attn="sdpa": _build(
        hf.Gemma3ForCausalLM, hf.Gemma3TextConfig, attn, **DECODER, head_dim=8, sliding_window=4
    ),
    "phi3": lambda attn="sdpa": _build(
        hf.Phi3ForCausalLM,
        hf.Phi3Config,
        attn,
        **DECODER,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    ),
    "gpt2": lambda attn="sdpa": _build(
        hf.GPT2LMHeadModel,
        hf.GPT2Config,
        attn,
        vocab_size=VOCAB,
        n_embd=HIDDEN,
        n_inner=MLP,
        n_layer=LAYERS,
        n_head=4,
    ),
    "opt": lambda attn="sdpa": _build(
        hf.OPTForCausalLM,
        hf.OPTConfig,
        attn,
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        ffn_dim=MLP,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        word_embed_proj_dim=HIDDEN,
    ),
    "falcon": lambda attn="sdpa": _build(
        hf.FalconForCausalLM,
        hf.FalconConfig,
        attn,
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=8,
        num_kv_heads=2,
        new_decoder_architecture=True,
        ffn_hidden_size=MLP,
    ),
    "gpt_neox": lambda attn="sdpa": _build(
        hf.GPTNeoXForCausalLM,
        hf.GPTNeoXConfig,
        attn,
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=MLP,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
    ),
    "mixtral": lambda attn="sdpa": _build(
        hf.MixtralForCausalLM,
        hf.MixtralConfig,
        attn,
        **DECODER,
        head_dim=8,
        num_local_experts=4,
        num_experts_per_tok=2,
    ),
    "qwen3_moe": lambda attn="sdpa": _build(
        hf.Qwen3MoeForCausalLM,
        hf.Qwen3MoeConfig,
        attn,
        **DECODER,
        head_dim=8,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=48,
        decoder_sparse_step=1,
    ),
    "bert": lambda attn="sdpa": _build(
        hf.BertForSequenceClassification,
        hf.BertConfig,
        attn,
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=MLP,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_labels=3,
    ),
    "vit": lambda attn="sdpa": _build(
        hf.ViTForImageClassification,
        hf.ViTConfig,
        attn,
        hidden_size=HIDDEN,
        intermediate_size=MLP,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        num_labels=3,
    ),
    "t5": lambda attn="eager": _build(
        hf.T5ForConditionalGeneration,
        hf.T5Config,
        attn,
        vocab_size=VOCAB,
        d_model=HIDDEN,
        d_ff=MLP,
        d_kv=16,
        num_layers=LAYERS,
        num_decoder_layers=LAYERS,
        num_heads=4,
    ),
}


class SmallCNN(nn.Module):
    """Residual add over a depthwise-separable pair with BatchNorm, a concat of two
    branches, a split gated by sigmoid, and a chunk swap before the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.branch_a = nn.Conv2d(16, 8, 1)
        self.branch_b = nn.Conv2d(16, 12, 1)
        self.fuse = nn.Conv2d(20, 24, 1)
        self.head = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = x + self.pw(F.relu(self.dw(x)))
        y = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)
        a, b = torch.split(self.fuse(y), [12, 12], dim=1)
        c1, c2 = (a * torch.sigmoid(b)).chunk(2, dim=1)
        return self.head(torch.cat([c2, c1], dim=1).mean((2, 3)))


def small_cnn() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN().eval()


def three_layer_llama() -> hf.LlamaForCausalLM:
    config = hf.LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=8,
    )
    torch.manual_seed(0)
    return hf.LlamaForCausalLM(config).eval()
