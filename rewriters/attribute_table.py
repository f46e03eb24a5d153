"""Which attributes each module class reads about its group's width: a table.

Model code keeps head counts and widths as plain attributes (``num_key_value_groups``
on Llama's attention, ``split_size`` on GPT-2's, ``all_head_size`` on BERT's).
For a class in :data:`ATTRIBUTES`, exactly the attributes listed there are
updated after a cut. A class the table does not know goes through the generic
path, which updates any attribute of a known name whose value equals the old
width, and says so in the ``surgeon.rewriters`` log, so a new class is added
here once it is seen, not guessed at forever.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from torch import nn

from surgeon.analyzers.compared import COMPARED
from surgeon.errors import RewriteError

from .transaction import Transaction

__all__ = [
    "ATTRIBUTES",
    "check_compared",
    "compared_widths",
    "head_widths",
    "lists",
    "set_width_attributes",
]

log = logging.getLogger("surgeon.rewriters")

# module class name -> the width attributes its forward reads (no other attribute of
# the generic names is touched on it). Each entry was seen updated by the generic
# path in a cut that verify then proved (tests/rewriters/test_attribute_table.py
# re-derives them), on transformers 5.23.
ATTRIBUTES: dict[str, frozenset[str]] = {
    name: frozenset(attrs)
    for name, attrs in {
        "BertSelfAttention": ("all_head_size", "num_attention_heads"),
        "FalconAttention": ("num_heads", "num_kv_heads", "split_size"),
        "GPT2Attention": ("embed_dim", "num_heads", "split_size"),
        # multi-query: splits its fused c_attn by (embed_dim, kv_dim, kv_dim)
        "GPTBigCodeAttention": ("num_heads", "embed_dim", "kv_dim", "num_key_value_groups"),
        # builds (and runs) its projection only when hidden_size != hidden_size_output
        "HieraLayer": ("hidden_size", "hidden_size_output"),
        # reshapes its heads' output by hidden_size_output (HEAD_WIDTH_OF)
        "HieraMaskUnitAttention": ("num_heads", "head_dim", "hidden_size_output"),
        "Gemma3Attention": ("num_key_value_groups",),
        "Gemma3MLP": ("intermediate_size",),
        # value heads attention_ratio x key_dim wide; key_dim is a per-head width
        # mixture of attention heads: hidden_size is its key/value width (kv heads
        # x head_dim), input_size the model's
        "JetMoeMoA": ("hidden_size", "input_size", "num_experts"),
        "LevitAttention": ("num_attention_heads", "out_dim_projection"),
        "LevitAttentionSubsample": ("num_attention_heads", "out_dim_projection"),
        "LlamaAttention": ("num_key_value_groups",),
        "LlamaMLP": ("intermediate_size",),
        "MambaMixer": ("ssm_state_size", "time_step_rank"),
        "MistralAttention": ("num_key_value_groups",),
        "MistralMLP": ("intermediate_size",),
        "MixtralAttention": ("num_key_value_groups",),
        "MixtralExperts": ("intermediate_dim", "num_experts"),
        "MixtralTopKRouter": ("num_experts", "hidden_dim"),  # reshapes its input by hidden_dim
        # splits its fused qkv conv by [1, embed_dim, embed_dim]: its key/value channels
        "MobileViTV2LinearSelfAttention": ("embed_dim",),
        "OPTAttention": ("num_heads",),
        "Phi3Attention": ("num_key_value_groups", "num_key_value_heads"),
        "Qwen2Attention": ("num_key_value_groups",),
        "Qwen2MLP": ("intermediate_size",),
        "Qwen3Attention": ("num_key_value_groups",),
        "Qwen3MLP": ("intermediate_size",),
        "Qwen3MoeAttention": ("num_key_value_groups",),
        "Qwen3MoeExperts": ("intermediate_dim", "num_experts"),
        "Qwen3MoeTopKRouter": ("num_experts", "hidden_dim"),  # reshapes its input by hidden_dim
        "T5Attention": ("inner_dim", "n_heads"),
        # reads d_model only for its sinusoidal positions, whose width is the (uncut)
        # rows of each layer's r, never the hidden size's
        "XLNetModel": (),
        "ViTAttention": ("num_attention_heads",),
        # other libraries: keyed by module and class, their names are generic
        "timm.layers.attention.Attention": ("attn_dim", "num_heads"),
        # torch's own: embed_dim is the model width, its inner width is heads x head_dim
        "torch.nn.modules.activation.MultiheadAttention": ("num_heads",),
    }.items()
}


# widths a module keeps for its parent's forward, which reads them (its own code
# never does, so no cut of its parameters finds them): class -> {attribute: the
# parameter below the module whose rows (dim 0) the attribute counts}. A group that
# cuts those rows sets the attribute, on that module alone: another group of the
# same width under it (RAFT's motion features, its context channels) never does.
READ_FROM_ABOVE: dict[str, dict[str, str]] = {
    # RAFT splits its context encoder's output by update_block.hidden_state_size,
    # the width of the GRU's state
    "torchvision.models.optical_flow.raft.UpdateBlock": {
        "hidden_state_size": "recurrent_block.convgru1.convz.weight"
    },
}

# names so often the hidden size that they are updated only as the heads' width,
# on the attention module itself (BART-style attention reshapes its heads' output
# by embed_dim; GPTBigCode's embed_dim is its query width): never on a hidden-size
# cut, never on the layers around the attention
HEAD_WIDTH_ONLY = frozenset({"embed_dim"})
# the same, for one class: a name other classes use for a stream's width
# (HieraLayer's hidden_size_output) but this class for its heads' width; updated
# by head cuts only (rewriters.attributes decides which names are heads' widths)
HEAD_WIDTH_OF: dict[str, frozenset[str]] = {
    "HieraMaskUnitAttention": frozenset({"hidden_size_output"}),
}


def set_width_attributes(
    module: nn.Module,
    path: str,
    names: Iterable[str],
    old: int,
    new: int,
    tx: Transaction,
    heads: bool = False,
) -> None:
    """Set the attributes among ``names`` that ``module``'s class reads (the table),
    or, for a class the table does not know, every one that equals ``old`` (logged).
    ``heads``: ``module`` is the attention whose heads are cut (it holds the projections)."""
    known = _known(module)
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, tuple) and value and value[-1] == old:
            value, new_value = value[-1], (*value[:-1], new)  # normalized_shape=(width,)
        else:
            new_value = new
        if value != old or isinstance(value, bool):
            continue
        if name in HEAD_WIDTH_ONLY and not heads:
            continue
        if known is None:
            log.info(
                "generic attribute update: %s (%s).%s %d -> %d; add the class to "
                "surgeon.rewriters.attribute_table.ATTRIBUTES once checked",
                path or "<root>",
                type(module).__name__,
                name,
                old,
                new,
            )
        elif name not in known:
            continue
        tx.set(module, name, new_value)


def lists(module: nn.Module, name: str) -> bool:
    """Whether the table lists ``name`` for ``module``'s class."""
    known = _known(module)
    return known is not None and name in known


def set_read_from_above(model: nn.Module, cuts: Iterable, tx: Transaction) -> None:
    """Set the :data:`READ_FROM_ABOVE` attributes of the modules above each cut's
    row members, where the listed parameter's rows are the ones cut."""
    for cut in cuts:
        group = cut.group
        if len(group.levels) != 1:
            continue
        kept = cut.kept_size(group.levels[0].name)
        rows = {m.param for m in group.members if m.dim == 0 and m.layout.kind == "unit"}
        for param in rows:
            parts = param.split(".")
            for depth in range(len(parts) - 1):
                path = ".".join(parts[:depth])
                try:
                    module = model.get_submodule(path)
                except AttributeError:  # a name that is no module path
                    break
                for name, source in _read_from_above(module).items():
                    if (f"{path}.{source}" if path else source) != param:
                        continue
                    if getattr(module, name, None) == group.size:
                        tx.set(module, name, kept)


def _read_from_above(module: nn.Module) -> dict[str, str]:
    for cls in type(module).__mro__:
        found = READ_FROM_ABOVE.get(f"{cls.__module__}.{cls.__qualname__}")
        if found:
            return found
    return {}


def compared_widths(model: nn.Module) -> list[tuple[str, nn.Module, str, str, bool]]:
    """(path, module, a, b, whether a == b now) for the :data:`COMPARED` pairs."""
    found = []
    for path, module in model.named_modules():
        for cls in type(module).__mro__:
            for (a, _), (b, _) in COMPARED.get(cls.__name__, ()):
                found.append((path, module, a, b, getattr(module, a) == getattr(module, b)))
    return found


def check_compared(compared: list[tuple[str, nn.Module, str, str, bool]]) -> None:
    """Refuse a cut that changed the outcome of a :data:`COMPARED` test."""
    for path, module, a, b, equal in compared:
        left, right = getattr(module, a), getattr(module, b)
        if (left == right) != equal:
            raise RewriteError(
                f"module '{path}' ({type(module).__name__}) compares {a} with {b} to choose "
                f"its code path; this cut makes them {'equal' if not equal else 'differ'} "
                f"({left} and {right}), which would run another path than the original's: "
                "keep another width in one of the two groups. The model is unchanged."
            )


def head_widths(module: nn.Module) -> frozenset[str]:
    """The names :data:`HEAD_WIDTH_OF` lists for ``module``'s class."""
    for cls in type(module).__mro__:
        if cls.__name__ in HEAD_WIDTH_OF:
            return HEAD_WIDTH_OF[cls.__name__]
    return frozenset()


def _known(module: nn.Module) -> frozenset[str] | None:
    for cls in type(module).__mro__:
        for key in (f"{cls.__module__}.{cls.__qualname__}", cls.__name__):
            if key in ATTRIBUTES:
                return ATTRIBUTES[key]
    return None
