"""``verify``: prove a pruned model equal to its original with the removed
units masked.

The reference is a copy of the original in which every slice the plan removes
is zeroed, on every member of the group: the consumer side (``down_proj``'s
columns, ``o_proj``'s head columns) included, so a removed unit contributes
nothing even where an activation is non-zero at zero. Axes that feed a softmax
or top-k (an MoE router's experts) are masked with ``-inf`` on the router's
logits, and removed blocks pass their input through. Both models run on the
same inputs; every output is compared.

The report also says how much the check could see: how far masking the removed
units moves the original's outputs. Where that is within a few tolerances
(random weights whose removed units barely matter, an input that does not reach
them), a wrong cut would pass as well as a right one: the report says so
(``weak``). Neither model is left changed by the check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from surgeon.analyzers import Analysis, analyze
from surgeon.analyzers.capture import plain_output
from surgeon.analyzers.checks import check_eval_mode
from surgeon.analyzers.example_inputs import call_inputs
from surgeon.analyzers.untouched import copy_keeping_modes, untouched
from surgeon.errors import InputError, RewriteError
from surgeon.plan.plan import Plan
from surgeon.rewriters import GroupCut, ResolvedPlan, apply, resolve

__all__ = ["OutputCheck", "VerifyReport", "MaskedReference", "verify"]

_TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10, torch.bfloat16: 2e-2, torch.float16: 5e-3}
# A check whose masking moves the outputs by at most this many tolerances cannot
# tell a right cut from a wrong one.
WEAK_POWER = 10.0
# Groups inexact by nature are measured one cut each up to this many; beyond it
# (a deep MoE's experts, one group per layer) together, in one cut.
ALONE_LIMIT = 8


@dataclass(frozen=True)
class OutputCheck:
    name: str
    max_abs: float
    max_rel: float  # max |pruned - reference| / max |reference|
    ok: bool


@dataclass(frozen=True)
class VerifyReport:
    """Per-output errors; ``inexact`` maps each group that cannot be exactly
    equivalent by nature (norm statistics over its axis) to the error it alone
    causes (with the plan's removed blocks removed too; with more than
    ``ALONE_LIMIT`` of them, or one that cannot be cut alone, the error they
    cause together). ``power`` is how far
    masking the removed units moves the original's outputs (max rel): a check
    is ``weak`` when that is within ``WEAK_POWER`` tolerances."""

    outputs: tuple[OutputCheck, ...]
    tolerance: float
    inexact: dict[str, float] = field(default_factory=dict)
    power: float | None = None
    removes: bool = True  # the plan removes something
    # with inexact groups and a mismatch: does pruned match the original with its
    # inexact groups cut for real and its exact groups masked?
    exact_ok: bool | None = None

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    @property
    def accepted(self) -> bool:
        """Verified, or off only by groups inexact by nature (with those cut
        for real and the others masked, the pruned model matches)."""
        return self.ok or (bool(self.inexact) and self.exact_ok is not False)

    @property
    def weak(self) -> bool:
        """True if a wrong cut could pass this check as well as a right one."""
        return self.power is not None and self.power <= WEAK_POWER * self.tolerance

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((o.max_rel for o in self.outputs), default=0.0)

    def __str__(self) -> str:
        lines = [f"verify: {'ok' if self.ok else 'MISMATCH'} (tolerance {self.tolerance:g})"]
        for o in self.outputs:
            lines.append(f"  {o.name}: max abs {o.max_abs:.3g}, max rel {o.max_rel:.3g}")
        for group_id, error in self.inexact.items():
            lines.append(
                f"  not exact by nature: {group_id} (norm statistics), max rel {error:.3g}"
            )
        if self.exact_ok is not None:
            verdict = "ok" if self.exact_ok else "MISMATCH"
            lines.append(f"  against the inexact groups cut and the rest masked: {verdict}")
        if self.power is not None:
            lines.append(self.power_note())
        return "\n".join(lines)

    def power_note(self) -> str:
        """One line on how much this check could see."""
        if not self.removes:
            return "  power: the plan removes nothing, so there was nothing to check"
        moved = f"masking the removed units moves the outputs by max rel {self.power:.3g}"
        if not self.weak:
            return f"  power: {moved} ({self.power / self.tolerance:.3g}x the tolerance)"
        return (
            f"  WEAK CHECK: {moved}, within {WEAK_POWER:g}x the tolerance: a wrong cut would "
            "pass as well; verify on inputs that reach the removed units (real data, "
            "trained weights)"
        )


def verify(
    original: nn.Module,
    pruned: nn.Module,
    plan: Plan | Mapping[str, Sequence[int]],
    inputs: Any = None,
    analysis: Analysis | None = None,
    tolerance: float | None = None,
) -> VerifyReport:
    """Compare ``pruned`` with ``original`` masked by ``plan`` on ``inputs``
    (as for :func:`~surgeon.analyze`: a tensor, a tuple, a dict or
    ``BatchEncoding``, an ``(args, kwargs)`` pair; derived from a Hugging Face
    config when omitted)."""
    plan = Plan.coerce(plan)
    check_eval_mode(original, pruned)
    analysis = analysis if analysis is not None else analyze(original, inputs)
    if analysis.parts is not None:  # chosen submodules: compare them on what they received
        original, pruned = analysis.parts.rebind(original), analysis.parts.rebind(pruned)
        inputs = analysis.inputs
    resolved = resolve(plan, analysis)
    args, kwargs = call_inputs(original, inputs)
    dtype = next((p.dtype for p in original.parameters() if p.is_floating_point()), torch.float32)
    tolerance = _TOLERANCE.get(dtype, 1e-5) if tolerance is None else tolerance
    expected = _run(MaskedReference(original, resolved), args, kwargs)
    outputs = _check(expected, _run(pruned, args, kwargs), tolerance)
    if not outputs:
        raise InputError(
            f"{type(original).__name__} returned no floating-point tensor to compare "
            f"(got {type(expected).__name__}): verify compares tensors, lists, tuples, dicts "
            "and ModelOutputs of them"
        )
    moved = _check(expected, _run(original, args, kwargs), tolerance)
    power = max((c.max_rel for c in moved), default=0.0)

    def cut_for_real(cuts: tuple[GroupCut, ...], check: bool = True) -> nn.Module:
        """The original with the plan's ``cuts`` and its depth cut applied."""
        part = Plan({cut.group.id: _units(cut) for cut in cuts}, plan.remove_blocks)
        return apply(original, part, analysis=analysis, check=check)

    def error_of(cuts: tuple[GroupCut, ...]) -> float:
        """How far cutting ``cuts`` for real (with the depth cut) moves the outputs
        from masking them: the error that is theirs by nature. The cut is run, not
        captured again (the whole plan's cut already was)."""
        reference = MaskedReference(original, ResolvedPlan(cuts, resolved.blocks))
        try:
            real = _run(cut_for_real(cuts, check=False), args, kwargs)
        except RewriteError:
            raise
        except Exception as error:  # noqa: BLE001 - a part of the plan that cannot run alone
            raise RewriteError(f"{type(error).__name__}: {error}") from error
        return max(c.max_rel for c in _check(_run(reference, args, kwargs), real, tolerance))

    inexact, together = {}, []
    by_nature = tuple(c for c in resolved.cuts if not c.group.mask_equivalent)
    for cut in by_nature if len(by_nature) <= ALONE_LIMIT else ():
        try:  # its error alone
            inexact[cut.group.id] = error_of((cut,))
        except RewriteError:  # it cannot be cut alone (an encoder and decoder of
            together.append(cut)  # one width): measured with the others of its kind
    if len(by_nature) > ALONE_LIMIT:  # a deep MoE's experts: one cut, not one per layer
        together = list(by_nature)
    if together:
        joint = error_of(by_nature)
        inexact.update({cut.group.id: joint for cut in together})
    exact_ok = None
    if inexact and not all(o.ok for o in outputs):
        # pruned against the original with its inexact groups cut for real and
        # its exact groups masked: exact again, so a wrong exact cut still shows
        inexact_cuts = tuple(c for c in resolved.cuts if not c.group.mask_equivalent)
        partial = cut_for_real(inexact_cuts)
        exact = tuple(c for c in resolved.cuts if c.group.mask_equivalent)
        reference = MaskedReference(
            partial, ResolvedPlan(exact, ()), missing_ok=True, already_cut=inexact_cuts
        )
        checks = _check(_run(reference, args, kwargs), _run(pruned, args, kwargs), tolerance)
        exact_ok = all(c.ok for c in checks)
    removes = bool(resolved.blocks) or any(cut.removes_anything for cut in resolved.cuts)
    return VerifyReport(tuple(outputs), tolerance, inexact, power, removes, exact_ok)


def _units(cut: GroupCut) -> list[int]:
    from surgeon.rewriters.resolve import units_of

    return units_of(cut.kept, cut.group)


class MaskedReference:
    """A copy of ``model`` with the plan's removed units masked. Call it like the model."""

    def __init__(
        self,
        model: nn.Module,
        resolved: ResolvedPlan,
        missing_ok: bool = False,
        already_cut: tuple[GroupCut, ...] = (),
    ) -> None:
        """``missing_ok``: skip members ``model`` no longer has (it lost their
        block already). ``already_cut``: cuts ``model`` has had for real; where
        one shares a dimension with a masked group (RoCBert's embeddings meet
        in one concatenated input), indices are counted after it."""
        self.model = copy_keeping_modes(model)
        self._missing_ok = missing_ok
        self._survivors: dict[tuple[str, int], list[int]] = {}
        for cut in already_cut:
            for member in cut.group.members:
                kept = member.layout.indices(cut.kept)
                key = (member.param, member.dim)
                before = self._survivors.get(key, range(member.shape[member.dim]))
                kept_set = set(kept)
                self._survivors[key] = [i for i in before if i in kept_set]
        self._logit_masks: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            for cut in resolved.cuts:
                self._mask(cut)
        for block in resolved.blocks:
            self.model.get_submodule(block.name).register_forward_hook(
                _pass_input_through, with_kwargs=True
            )

    def _mask(self, cut: GroupCut) -> None:
        routers = set(cut.group.routers)
        for member in cut.group.members:
            kept = set(member.layout.indices(cut.kept))
            removed = [i for i in range(member.shape[member.dim]) if i not in kept]
            survivors = self._survivors.get((member.param, member.dim))
            if survivors is not None:  # positions in the already cut tensor
                position = {index: at for at, index in enumerate(survivors)}
                removed = [position[i] for i in removed if i in position]
            if not removed:
                continue
            try:
                tensor = (
                    self.model.get_parameter(member.param)
                    if not member.buffer
                    else (self.model.get_buffer(member.param))
                )
            except AttributeError:
                if self._missing_ok:
                    continue
                raise
            index = torch.tensor(removed, device=tensor.device)
            tensor.index_fill_(member.dim, index, 0.0)
            if member.param in routers and len(member.shape) == 2:
                self._logit_masks[id(tensor)] = (index, member.dim)

    def __call__(self, *args, **kwargs):
        with _NegInfLogits(self._logit_masks):
            return self.model(*args, **kwargs)

    def generate(self, *args, **kwargs):
        """``model.generate`` with the masks in force (for comparing generations)."""
        with _NegInfLogits(self._logit_masks):
            return self.model.generate(*args, **kwargs)


def _pass_input_through(module, args, kwargs, output):
    hidden = args[0] if args else kwargs["hidden_states"]
    if isinstance(output, torch.Tensor):
        return hidden
    return (hidden, *output[1:])


class _NegInfLogits(TorchFunctionMode):
    """Set a router's logits to ``-inf`` for removed units, so softmax and top-k
    see exactly the kept ones. A router is a 2-D weight whose unit dim becomes
    the last axis of ``F.linear(x, W)`` (dim 0), or of ``x @ W`` (dim 1, or dim 0
    through ``W.t()``)."""

    _PRODUCTS = {
        torch.nn.functional.linear: 1,
        torch.matmul: 1,
        torch.Tensor.__matmul__: 1,
        torch._C.TensorBase.matmul: 1,
        torch.mm: 1,
        torch._C.TensorBase.mm: 1,
        torch.addmm: 2,
    }

    def __init__(self, masks: dict[int, tuple[torch.Tensor, int]]) -> None:
        super().__init__()
        self.masks = masks

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        position = self._PRODUCTS.get(func)
        if position is None or len(args) <= position:
            return out
        weight = args[position]
        base = getattr(weight, "_base", None)
        for tensor, transposed in ((weight, False), (base, True)):
            mask = self.masks.get(id(tensor)) if tensor is not None else None
            if mask is None:
                continue
            index, dim = mask
            unit_dim_last = (
                (dim == 0)
                if func is torch.nn.functional.linear
                else (dim == (0 if transposed else 1))
            )
            if unit_dim_last:
                return out.index_fill(-1, index, float("-inf"))
        return out


def _run(model, args, kwargs):
    """``model``'s outputs on the inputs, leaving nothing on it (a forward that
    caches a table on its module keeps it only for this call)."""
    owner = model.model if isinstance(model, MaskedReference) else model
    with torch.no_grad(), untouched(owner):
        return plain_output(_plain(model(*args, **kwargs)))


def _check(expected, actual, tolerance) -> list[OutputCheck]:
    expected_leaves, _ = pytree.tree_flatten_with_path(expected)
    actual_leaves = dict(pytree.tree_flatten_with_path(actual)[0])
    checks = []
    for path, ref in expected_leaves:
        if not isinstance(ref, torch.Tensor) or not ref.is_floating_point():
            continue
        out = actual_leaves.get(path)
        name = pytree.keystr(path) or "output"
        if not isinstance(out, torch.Tensor) or out.shape != ref.shape:
            checks.append(OutputCheck(name, float("inf"), float("inf"), False))
            continue
        diff = (out.float() - ref.float()).abs()
        max_abs = float(diff.max()) if diff.numel() else 0.0
        scale = float(ref.float().abs().max()) if ref.numel() else 0.0
        max_rel = max_abs / scale if scale > 0 else max_abs
        checks.append(OutputCheck(name, max_abs, max_rel, max_rel <= tolerance))
    return checks


def _plain(output):
    """HF ModelOutputs as dicts of their set fields, so both sides flatten alike."""
    if hasattr(output, "to_tuple") and hasattr(output, "keys"):
        return {k: output[k] for k in output.keys()}  # noqa: SIM118 - ModelOutput, not dict
    return output
