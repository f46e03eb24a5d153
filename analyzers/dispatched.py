"""Models dispatched by accelerate (``device_map``): analyse their structure.

``dispatch_model`` / ``from_pretrained(device_map=...)`` wrap module forwards
in hooks that move activations between devices and, for offloaded modules,
load weights from CPU or disk during each forward (between forwards those
weights sit on the meta device). ``torch.export`` cannot trace that loading
(it reads data pointers), and the analysis needs only shapes anyway, so a
dispatched model is analysed through a hook-free copy of its structure on the
meta device. The copy shares no storage with the model and costs no memory
for weights.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

__all__ = ["has_accelerate_hooks", "materialized_copy", "meta_skeleton", "to_meta"]

# Instance attributes accelerate adds: its hook, the wrapped forward, and the
# warning wrappers dispatch_model puts on the root's .to/.cuda/...
_HOOK_ATTRIBUTES = ("_hf_hook", "_old_forward", "forward")
_ADDED_ATTRIBUTES = ("to", "cuda", "npu", "xpu", "mlu", "sdaa", "musa")


def has_accelerate_hooks(model: nn.Module) -> bool:
    return any("_hf_hook" in m.__dict__ for m in model.modules())


def meta_skeleton(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every parameter and buffer on the meta device
    and accelerate's hooks left out; parameter names and tying are kept."""
    return _hook_free_copy(model, lambda tensor: torch.empty_like(tensor, device="meta"))


def materialized_copy(model: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """A plain copy of a dispatched ``model``: accelerate's hooks left out and
    every weight (offloaded ones too) on ``device``. Needs the whole model's
    memory on ``device``; for larger models cut the checkpoint on disk instead
    (:func:`surgeon.prune_checkpoint`)."""
    from surgeon.calibrate.devices import onloaded

    with onloaded(model, device):
        return _hook_free_copy(model, lambda tensor: tensor.detach().to(device, copy=True))


def _hook_free_copy(model: nn.Module, tensor_copy: Callable) -> nn.Module:
    """Deep copy of ``model`` without accelerate's hooks, each tensor replaced by
    ``tensor_copy(tensor)`` (tied tensors stay tied: one copy per tensor)."""
    memo: dict[int, Any] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        copied = tensor_copy(tensor)
        if isinstance(tensor, nn.Parameter):
            copied = nn.Parameter(copied, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = copied
    for module in model.modules():
        for name in (*_HOOK_ATTRIBUTES, *_ADDED_ATTRIBUTES):
            value = module.__dict__.get(name)
            if value is not None:
                memo[id(value)] = None  # hooks hold the offloaded weights: never copy them
    skeleton = copy.deepcopy(model, memo)
    for module in skeleton.modules():
        for name in (*_HOOK_ATTRIBUTES, *_ADDED_ATTRIBUTES):
            module.__dict__.pop(name, None)
    return skeleton


def to_meta(tree: Any) -> Any:
    """Tensors in ``tree`` as meta tensors of the same shapes and dtypes."""
    return pytree.tree_map_only(torch.Tensor, lambda t: t.to("meta"), tree)
