"""Module classes whose code derives a head width from its input, which no
graph shows: their attention groups are frozen up front, with the reason.

torchvision's Swin splits its fused ``qkv`` into ``num_heads`` heads of width
``C // num_heads``, ``C`` read from its input: with fewer heads the same
``C`` gives wider heads, and the cut model computes something else (or fails
to reshape). Each entry names the class by module and name, and says why; a
cut of such a group is refused before anything is copied, and the planner
never picks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from torch import nn

from .groups import Group, GroupKind

__all__ = ["FIXED_HEADS", "TIED_WIDTHS", "freeze_fixed_heads", "without_bias_caches"]

_SWIN = (
    "computes its head width as C // num_heads from its input's channels, so with fewer "
    "heads it would re-split the kept ones at the wrong width"
)
FIXED_HEADS: dict[str, str] = {
    "torchvision.models.swin_transformer.ShiftedWindowAttention": _SWIN,
    "torchvision.models.swin_transformer.ShiftedWindowAttentionV2": _SWIN,
    # mp_num = 4 is written in its forward: with fewer heads the four shards of the
    # fused qkv_proj are re-split at other boundaries (or no longer reshape)
    "transformers.models.codegen.modeling_codegen.CodeGenAttention": (
        "reshapes its fused qkv_proj output into mp_num = 4 shards, a number written "
        "in its forward, each holding a quarter of the heads"
    ),
    "transformers.models.convbert.modeling_convbert.ConvBertSelfAttention": (
        "folds its heads into the batch for its span convolution (reshape to [-1, "
        "conv_kernel_size, 1]) and concatenates those heads beside the attention's, both "
        "counted by num_attention_heads, which the graph shows as two unrelated axes"
    ),
    "transformers.models.deepseek_v4.modeling_deepseek_v4.DeepseekV4Attention": (
        "reshapes its heads into config.o_groups rows for its grouped output projection "
        "(o_a_proj), so each group must lose the same heads and o_groups stays"
    ),
    "timm.models.levit.Attention": (
        "reshapes its output to val_attn_dim and its bias table to a fixed head count"
    ),
    "timm.models.levit.AttentionDownsample": (
        "reshapes its output to val_attn_dim and its bias table to a fixed head count"
    ),
}


_PVT_V2 = (
    "reshapes its heads' output and its spatially reduced keys by num_channels, read from "
    "its input's shape, so every width inside it is the hidden size"
)
_INPUT_WIDTH = (
    "reshapes its heads' output to embed_dim read from its input's shape, so the heads' "
    "total width is the hidden size"
)
_BIG_BIRD = (
    "is rebuilt from the config when BigBirdAttention switches attention_type (sequences "
    "too short for block_sparse), with hidden_size // num_attention_heads wide heads"
)
# module class -> (the children whose parameters' groups are tied, None for all; why):
# widths the code reads from its input's shape or rebuilds from the config, which no
# graph shows. Every group, of any kind, with a parameter in such a child is frozen.
TIED_WIDTHS: dict[str, tuple[tuple[str, ...] | None, str]] = {
    "transformers.models.pvt_v2.modeling_pvt_v2.PvtV2SelfAttention": (None, _PVT_V2),
    "transformers.models.pvt.modeling_pvt.PvtEfficientSelfAttention": (
        ("sequence_reduction",),
        "reshapes its spatially reduced keys by num_channels, read from its input's shape, "
        "so the reduction's input and output widths are both the hidden size",
    ),
    "transformers.models.big_bird.modeling_big_bird.BigBirdSelfAttention": (None, _BIG_BIRD),
    # reshape(batch_size, -1, self.config.hidden_sizes[-1]): a list entry no cut updates
    "transformers.models.segformer.modeling_segformer.SegformerForImageClassification": (
        ("classifier:1",),
        "reshapes the last stage's output by config.hidden_sizes[-1] before its classifier, "
        "so that stage keeps its width",
    ),
    "transformers.models.segformer.modeling_segformer.SegformerSequenceReduction": (
        ("sequence_reduction",),
        "reshapes its reduced keys and values by num_channels, read from its input's shape, "
        "so the reduction's input and output widths are both the hidden size",
    ),
    # num_channels = hidden_state.shape[-1]; split(x, (num_channels, num_channels, ...))
    "transformers.models.focalnet.modeling_focalnet.FocalNetModulation": (
        None,
        "splits its projection_in output into queries and contexts num_channels wide, read "
        "from its input's shape, so both widths are its input's (the stage's width)",
    ),
    # embed_dim = hidden_states.size(-1) ... attn_output.reshape(bsz, tgt_len, embed_dim)
    "transformers.models.fsmt.modeling_fsmt.Attention": (None, _INPUT_WIDTH),
    "transformers.models.led.modeling_led.LEDDecoderAttention": (None, _INPUT_WIDTH),
    "transformers.models.trocr.modeling_trocr.TrOCRAttention": (None, _INPUT_WIDTH),
    "transformers.models.groupvit.modeling_groupvit.GroupViTAttention": (None, _INPUT_WIDTH),
    "transformers.models.prophetnet.modeling_prophetnet.ProphetNetAttention": (None, _INPUT_WIDTH),
    "transformers.models.prophetnet.modeling_prophetnet.ProphetNetNgramSelfAttention": (
        None,
        _INPUT_WIDTH,
    ),
    # DimensionInfo(hidden_dim=token_hidden_states.shape[2]) ... view(..., dim.hidden_dim)
    "transformers.models.pegasus_x.modeling_pegasus_x.PegasusXGlobalLocalAttention": (
        None,
        "reshapes its heads' output to hidden_dim read from its input's shape, so the "
        "heads' total width is the hidden size",
    ),
    # "child:dim": only that axis of the child's parameters (their input is the hidden size)
    "transformers.models.mra.modeling_mra.MraSelfAttention": (
        ("query:0", "key:0", "value:0"),
        "runs its heads through mra2_attention (block averages, blocks picked at run "
        "time), which ties query, key and value per head in ways the graph does not show",
    ),
    "transformers.models.big_bird.modeling_big_bird.BigBirdBlockSparseAttention": (
        None,
        _BIG_BIRD,
    ),
    # a dotted child: that module further down (RAFT's context encoder is of the same
    # class as its feature encoder, and its channels are cut)
    "torchvision.models.optical_flow.raft.RAFT": (
        ("feature_encoder.conv:0",),
        "divides its correlation volume by the square root of the feature maps' channel "
        "count, read from their shape (CorrBlock), so the feature encoder's output width "
        "is written into the result",
    ),
}


def freeze_fixed_heads(model: nn.Module, groups: Iterable[Group]) -> list[Group]:
    """``groups`` with every attention group owned by a class of
    :data:`FIXED_HEADS` frozen, naming the module, and every group with a
    parameter in a child that :data:`TIED_WIDTHS` names."""
    found = []
    for group in groups:
        if group.frozen is None:
            reason = _tied(model, group)
            if reason is None and group.kind == GroupKind.ATTENTION:
                reason = _fixed(model, group)
            if reason:
                group = replace(group, frozen=reason)
        found.append(group)
    return found


def _tied(model: nn.Module, group: Group) -> str | None:
    for member in group.members:
        parts = member.module.split(".")
        for depth in range(len(parts) - 1, -1, -1):  # the parent, then further up
            path, child = ".".join(parts[:depth]), ".".join(parts[depth:])
            module = model.get_submodule(path)
            name = f"{type(module).__module__}.{type(module).__qualname__}"
            if name not in TIED_WIDTHS:
                continue
            children, why = TIED_WIDTHS[name]
            if children is None:  # every parameter of its own children
                tied = "." not in child
            else:
                tied = child in children or f"{child}:{member.dim}" in children
            if tied:
                return (
                    f"module '{path or '<root>'}' ({type(module).__name__}) {why}: "
                    f"'{member.param}' cannot lose units"
                )
    return None


def _fixed(model: nn.Module, group: Group) -> str | None:
    paths = dict.fromkeys(
        path for m in group.members for path in (m.module, m.module.rpartition(".")[0])
    )
    for path in paths:
        module = model.get_submodule(path)
        name = f"{type(module).__module__}.{type(module).__qualname__}"
        if name in FIXED_HEADS:
            return (
                f"module '{path}' ({type(module).__name__}) {FIXED_HEADS[name]}: its heads "
                "cannot be removed; cut its MLP or channels instead"
            )
    return None


@contextmanager
def without_bias_caches(model: nn.Module) -> Iterator[None]:
    """Capture with LeViT's eval-mode ``attention_bias_cache`` empty (restored
    after), so the graph indexes ``attention_biases`` per head, not the cache."""
    saved = []
    for module in model.modules():
        cache = getattr(module, "attention_bias_cache", None)
        if isinstance(cache, dict) and cache:
            saved.append((module, cache))
            module.attention_bias_cache = {}
    try:
        yield
    finally:
        for module, cache in saved:
            module.attention_bias_cache = cache
