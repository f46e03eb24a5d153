"""Per-module-type fix-ups after their tensors were sliced: the attributes a
module's forward reads about its own shapes (``in_features``, ``groups``...).

One registry keyed by module type, resolved along the MRO so subclasses
(``FalconLinear``) are handled by their base's entry. A handler reads the new
tensor shapes and sets attributes through the transaction.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .transaction import Transaction

__all__ = ["fix_module", "register_module"]

Handler = Callable[[nn.Module, Transaction, dict], None]
_HANDLERS: dict[type, Handler] = {}


def register_module(*types: type) -> Callable[[Handler], Handler]:
    def decorate(handler: Handler) -> Handler:
        for module_type in types:
            if module_type in _HANDLERS:
                raise ValueError(f"a rewriter for {module_type.__name__} is already registered")
            _HANDLERS[module_type] = handler
        return handler

    return decorate


def fix_module(module: nn.Module, tx: Transaction, context: dict) -> None:
    """Update ``module``'s shape attributes; modules without a handler need none
    (they read their shapes from their tensors)."""
    for klass in type(module).__mro__:
        handler = _HANDLERS.get(klass)
        if handler is not None:
            handler(module, tx, context)
            return


@register_module(nn.Linear)
def _linear(module: nn.Linear, tx: Transaction, context: dict) -> None:
    out_features, in_features = module.weight.shape
    tx.set(module, "out_features", out_features)
    tx.set(module, "in_features", in_features)


@register_module(nn.modules.conv._ConvNd)
def _conv(module: nn.modules.conv._ConvNd, tx: Transaction, context: dict) -> None:
    first, second = module.weight.shape[:2]
    groups = context.get("conv_groups", {}).get(id(module), module.groups)
    if module.groups > 1 and module.groups == module.in_channels and not module.transposed:
        groups = first // (module.out_channels // module.groups)  # depthwise stays depthwise
    if module.transposed:
        in_channels, out_channels = first, second * groups
    else:
        out_channels, in_channels = first, second * groups
    tx.set(module, "groups", groups)
    tx.set(module, "in_channels", in_channels)
    tx.set(module, "out_channels", out_channels)


@register_module(nn.LayerNorm, nn.RMSNorm)
def _layer_norm(module: nn.Module, tx: Transaction, context: dict) -> None:
    if module.weight is not None:
        tx.set(module, "normalized_shape", tuple(module.weight.shape))


@register_module(nn.modules.batchnorm._NormBase)
def _batch_norm(module: nn.Module, tx: Transaction, context: dict) -> None:
    source = module.weight if module.weight is not None else module.running_mean
    tx.set(module, "num_features", int(source.shape[0]))


@register_module(nn.GroupNorm)
def _group_norm(module: nn.GroupNorm, tx: Transaction, context: dict) -> None:
    channels = int(module.weight.shape[0])
    groups = context.get("conv_groups", {}).get(id(module), module.num_groups)
    tx.set(module, "num_channels", channels)
    tx.set(module, "num_groups", groups)


@register_module(nn.Embedding)
def _embedding(module: nn.Embedding, tx: Transaction, context: dict) -> None:
    tx.set(module, "num_embeddings", int(module.weight.shape[0]))
    tx.set(module, "embedding_dim", int(module.weight.shape[1]))


def _hf_conv1d(module: nn.Module, tx: Transaction, context: dict) -> None:
    tx.set(module, "nf", int(module.weight.shape[1]))


try:  # transformers' GPT-2 style Conv1D stores its weight as [in, out]
    from transformers.pytorch_utils import Conv1D

    register_module(Conv1D)(_hf_conv1d)
except ImportError:  # pragma: no cover - transformers is a dependency
    pass
