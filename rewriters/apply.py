"""``apply``: cut a model to a plan, all or nothing.

1. The plan is resolved against the analysis (every plan error surfaces here).
2. New tensors are computed by slicing each member along its dim through the
   group's index layout; nothing is assigned yet.
3. Tensors, module attributes and config fields are assigned through one
   transaction; blocks are removed. Any error rolls the transaction back, so
   the model is exactly as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.utils import _pytree as pytree

from surgeon.analyzers import Analysis, Layout, analyze
from surgeon.analyzers.capture import capture
from surgeon.analyzers.checks import check_no_hooks
from surgeon.analyzers.untouched import copy_keeping_modes
from surgeon.checkpoint.provenance import Provenance, record
from surgeon.errors import CaptureError, PlanError, RewriteError
from surgeon.plan.plan import Plan

from .attribute_table import set_read_from_above
from .attributes import update_attributes
from .companions import unread_companions
from .depth import remove_blocks
from .modules import fix_module
from .resolve import ResolvedPlan, kept_indices, resolve
from .transaction import Transaction

__all__ = ["apply"]


def apply(
    model: nn.Module,
    plan: Plan | Mapping[str, Sequence[int]],
    inplace: bool = False,
    analysis: Analysis | None = None,
    check: bool = True,
) -> nn.Module:
    """Return ``model`` cut to ``plan`` (a copy unless ``inplace``).

    ``plan`` is a :class:`~surgeon.Plan` or ``{group_id: kept_unit_indices}``.
    ``analysis`` defaults to ``surgeon.analyze(model)``. With ``check`` the cut
    model is captured again with the analysis' inputs (fake tensors: no compute,
    any size); if it no longer runs, everything is rolled back.
    """
    if not isinstance(model, nn.Module):
        raise PlanError(f"apply expects a torch.nn.Module, not {type(model).__name__}")
    plan = Plan.coerce(plan)
    check_no_hooks(model)
    analysis = analysis if analysis is not None else analyze(model)
    resolved = resolve(plan, analysis)
    provenance = Provenance.of(model) or Provenance.start(model)
    target = model if inplace else copy_keeping_modes(model)
    slices = kept_indices(resolved)
    slices.update(unread_companions(target, slices, analysis))
    new_tensors = {name: _slice(_tensor(target, name), dims) for name, dims in slices.items()}
    tx = Transaction()
    try:
        _assign(target, new_tensors, _aliases(analysis), tx)
        context = {"conv_groups": _new_group_counts(target, resolved)}
        for module_name in sorted({name.rpartition(".")[0] for name in new_tensors}):
            fix_module(target.get_submodule(module_name), tx, context)
        update_attributes(target, analysis, resolved.cuts, tx, [b.name for b in resolved.blocks])
        set_read_from_above(target, resolved.cuts, tx)
        remove_blocks(target, resolved.blocks, tx)
        if check:
            _still_runs(target, analysis)
        record(target, provenance, plan, analysis.inputs)
    except Exception as error:
        tx.rollback()
        if isinstance(error, RewriteError):
            raise
        raise RewriteError(
            f"rewriting {type(model).__name__} failed, model unchanged: {error}"
        ) from error
    return target


def _still_runs(model: nn.Module, analysis: Analysis) -> None:
    """Capture the cut model again with the analysis inputs (fake tensors, no
    compute, the same code path as the analysis): a size written into the
    model's code (``torch.split(x, [12, 12])``) shows up here."""
    args, kwargs = analysis.inputs
    if analysis.parts is not None:  # analysed as chosen submodules: capture those again
        model = analysis.parts.rebind(model)
    try:
        captured = capture(model, args, kwargs)
    except CaptureError as error:
        module = error.module or "<root>"
        raise RewriteError(
            f"the cut model no longer runs: module '{module}' failed with: {error.cause}. "
            "A size written into the model's code (not read from an attribute) probably "
            "depends on a cut group; keep that group whole. The model is unchanged."
        ) from error
    _check_pinned_outputs(captured, analysis)


def _check_pinned_outputs(captured, analysis: Analysis) -> None:
    """Outputs whose axes are pinned keep their shape under any valid cut. One
    that changed took a size from a cut tensor (``d = x.shape[-1]`` then
    ``expand(.., d)``) for an axis the plan does not cut: the cut model runs,
    but computes something else."""
    output = next(n for n in captured.graph.nodes if n.op == "output")
    leaves = pytree.tree_leaves(output.args)
    for index, label, shape in analysis.pinned_outputs:
        leaf = leaves[index] if index < len(leaves) else None
        value = leaf.meta.get("val") if isinstance(leaf, torch.fx.Node) else None
        new = tuple(value.shape) if isinstance(value, torch.Tensor) else None
        if new != shape:
            raise RewriteError(
                f"the cut model runs, but its output '{label}' changed shape from "
                f"{list(shape)} to {list(new) if new else new}: a size read from a cut tensor's "
                "shape in the model's code (such as d = x.shape[-1] used to expand or reshape) "
                "shapes an axis the plan does not cut; keep the cut groups whole. "
                "The model is unchanged."
            )


def _slice(tensor: torch.Tensor, dims: dict[int, list[int]]) -> torch.Tensor:
    with torch.no_grad():
        for dim, indices in sorted(dims.items()):
            index = torch.tensor(indices, dtype=torch.long, device=tensor.device)
            tensor = tensor.index_select(dim, index)
        return tensor.contiguous()


def _tensor(model: nn.Module, name: str) -> torch.Tensor:
    module_name, _, attr = name.rpartition(".")
    tensor = getattr(model.get_submodule(module_name), attr, None)
    if not isinstance(tensor, torch.Tensor):
        raise RewriteError(f"the model has no parameter or buffer '{name}'")
    return tensor


def _aliases(analysis: Analysis) -> dict[str, tuple[str, ...]]:
    return {m.param: m.aliases for g in analysis.groups for m in g.members if m.aliases}


def _assign(model: nn.Module, tensors: dict[str, torch.Tensor], aliases, tx: Transaction) -> None:
    """Put each new tensor on every module that holds it (tied weights stay tied)."""
    for name, tensor in tensors.items():
        old = _tensor(model, name)
        value = (
            nn.Parameter(tensor, requires_grad=old.requires_grad)
            if isinstance(old, nn.Parameter)
            else tensor
        )
        for owner_name in (name, *aliases.get(name, ())):
            module_name, _, attr = owner_name.rpartition(".")
            module = model.get_submodule(module_name)
            if isinstance(value, nn.Parameter):
                tx.set(module, attr, value)
            else:
                _set_buffer(module, attr, value, tx)


def _set_buffer(module: nn.Module, attr: str, value: torch.Tensor, tx: Transaction) -> None:
    tx.set(_BufferSlot(module._buffers, attr), "value", value)


class _BufferSlot:
    """Lets the transaction set and restore one entry of a module's buffer dict."""

    def __init__(self, buffers: dict, name: str) -> None:
        self._buffers, self._name = buffers, name

    @property
    def value(self):
        return self._buffers[self._name]

    @value.setter
    def value(self, tensor) -> None:
        self._buffers[self._name] = tensor


def _new_group_counts(model: nn.Module, resolved: ResolvedPlan) -> dict[int, int]:
    """Grouped convolutions and group norms whose group axis (the outer factor of
    their channel layout) lost whole groups, in a group of any kind (SqueezeBERT's
    heads are its grouped convolutions' groups)."""
    counts = {}
    for cut in resolved.cuts:
        for member in cut.group.members:
            module = model.get_submodule(member.module)
            groups = getattr(module, "groups", None) or getattr(module, "num_groups", None)
            if not groups or groups == 1 or member.dim != 0:
                continue
            first = _outer_factor(member.layout)
            if first.kind == "unit" and first.size == groups:
                counts[id(module)] = len(cut.kept[first.level])
    return counts


def _outer_factor(layout: Layout) -> Layout:
    return layout.parts[0] if layout.kind == "product" else layout
