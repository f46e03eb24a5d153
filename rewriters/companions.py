"""Buffers the forward never reads that mirror a cut parameter of their module.

I-BERT's ``QuantLinear`` keeps ``weight_integer``, ``bias_integer`` and
``fc_scaling_factor`` beside ``weight`` and ``bias``; outside quantisation mode
its forward never reads them (the captured graph does not: ``Analysis.read``), so
the analysis sees nothing of them. Left whole,
they keep the old width, and the cut model's state no longer matches what its
config rebuilds (plain ``from_pretrained`` refuses it). They are cut exactly as
the parameter they mirror (the same shape, in the same module); one shaped like
two parameters cut differently is ambiguous and left for the shape check to
name.
"""

from __future__ import annotations

from torch import nn

from surgeon.analyzers import Analysis

__all__ = ["unread_companions"]


def unread_companions(
    model: nn.Module, slices: dict[str, dict[int, list[int]]], analysis: Analysis
) -> dict[str, dict[int, list[int]]]:
    """``buffer -> {dim: kept indices}`` for the unread buffers shaped like a cut
    parameter of the same module."""
    if analysis.read is None:  # not known: nothing is assumed unread
        return {}
    read = set(analysis.read)
    read.update(alias for group in analysis.groups for m in group.members for alias in m.aliases)
    by_module: dict[str, list[tuple[tuple[int, ...], dict[int, list[int]]]]] = {}
    for name, dims in slices.items():
        module_name, _, attr = name.rpartition(".")
        module = _submodule(model, module_name)
        tensor = getattr(module, attr, None) if module is not None else None
        if tensor is not None and attr in module._parameters:
            by_module.setdefault(module_name, []).append((tuple(tensor.shape), dims))
    found: dict[str, dict[int, list[int]]] = {}
    for module_name, cut in by_module.items():
        module = model.get_submodule(module_name)
        for attr, buffer in module._buffers.items():
            name = f"{module_name}.{attr}" if module_name else attr
            if buffer is None or name in read or name in slices:
                continue
            matches = [dims for shape, dims in cut if shape == tuple(buffer.shape)]
            if matches and all(dims == matches[0] for dims in matches):
                found[name] = matches[0]
    return found


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None
