"""Compensation after a cut: correct the layers that read a cut axis.

For a consumer ``y = W x + b`` whose inputs lost the units outside ``k``
(``down_proj`` for MLP channels, ``o_proj`` for heads), on the calibration
activations ``X`` (Gram ``G = X^T X``, mean ``mu``):

* ``bias``: FLAP (An et al. 2024, "Fluctuation-based Adaptive Structured
  Pruning", its baseline bias compensation): the removed inputs' mean
  contribution moves into the bias, ``b' = b + W[:, r] mu[r]``, so the
  output keeps its mean. A consumer without a bias gets one only where the
  model's config can declare it (``mlp_bias``, ``attention_bias``...), so the
  result still saves and reloads; otherwise the compensation is refused.
* ``refit``: least squares, ``W' = argmin ||X W^T - X_k W'^T||``, i.e.
  ``W' = W G[:, k] (G[k, k] + lambda I)^{-1}`` (the reconstruction behind
  OBS/SparseGPT-style updates, here for whole input columns), damped by
  ``lambda = damp * mean(diag G[k, k])``.
* ``refit+bias``: both at once, least squares with an intercept: the kept
  columns and a bias correction solve one system on ``[X_k, 1]``; it is never
  worse on the calibration data than either alone.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from surgeon.analyzers import Analysis
from surgeon.checkpoint.provenance import Provenance, remember
from surgeon.errors import InputError
from surgeon.plan.plan import Plan

from .resolve import resolve

__all__ = ["COMPENSATIONS", "compensate_consumers", "refit_consumers"]

COMPENSATIONS = {
    "bias": "bias compensation of the removed inputs' mean (FLAP)",
    "refit": "least-squares refit of consumer layers",
    "refit+bias": "least-squares refit of consumer layers with a bias (intercept)",
}


@dataclass(frozen=True)
class _Consumer:
    name: str  # in the pruned model
    module: nn.Linear  # in the pruned model
    weight: torch.Tensor  # the original weight, float64 on CPU
    kept: torch.Tensor  # kept input columns
    feature: object  # FeatureStats of the original's inputs


def compensate_consumers(
    original: nn.Module,
    pruned: nn.Module,
    plan: Plan,
    analysis: Analysis,
    stats,
    method: str = "refit",
    damp: float = 0.01,
) -> list[str]:
    """Compensate every ``nn.Linear`` whose input features were cut; return their
    names. Raises :class:`InputError` when ``method`` is unknown or a bias
    cannot be declared for the model (``method="bias"`` on a bias-free layer of
    a model whose config has no flag for it)."""
    if method not in COMPENSATIONS:
        raise InputError(f"compensate must be one of {sorted(COMPENSATIONS)}, not {method!r}")
    if damp < 0:
        raise InputError(f"compensate: damp must be >= 0, not {damp!r}")
    needs_gram = method.startswith("refit")
    consumers = list(_consumers(original, pruned, plan, analysis, stats, needs_gram))
    if "bias" in method:
        _add_biases(pruned, [c.name for c in consumers if c.module.bias is None])
    for c in consumers:
        if method == "bias":
            weight, shift = _mean_shift(c)
        else:
            weight, shift = _refit(c, damp, intercept=method == "refit+bias")
        with torch.no_grad():
            c.module.weight.copy_(weight.to(c.module.weight))
            if shift is not None:  # statistics live on the CPU, the model may not
                c.module.bias.add_(shift.to(c.module.bias))
    return [c.name for c in consumers]


def refit_consumers(
    original: nn.Module, pruned: nn.Module, plan: Plan, analysis: Analysis, stats, damp=0.01
) -> list[str]:
    """The least-squares refit alone (``compensate_consumers(..., "refit")``)."""
    return compensate_consumers(original, pruned, plan, analysis, stats, "refit", damp)


def _consumers(original, pruned, plan, analysis, stats, needs_gram) -> Iterator[_Consumer]:
    resolved = resolve(plan, analysis)
    rename = _renaming(analysis, resolved.blocks)
    rows = {  # a consumer whose outputs are cut too (a chain of layers) keeps these rows
        m.param: torch.tensor(m.layout.indices(cut.kept))
        for cut in resolved.cuts
        for m in cut.group.members
        if m.dim == 0
    }
    for cut in resolved.cuts:
        for member in cut.group.members:
            module_name, _, attr = member.param.rpartition(".")
            feature = stats.inputs.get(module_name) if stats else None
            if attr != "weight" or member.dim != 1 or feature is None or not feature.count:
                continue
            if needs_gram and feature.gram is None:
                continue
            new_name = rename(module_name)
            if new_name is None:
                continue  # its block was removed
            module = pruned.get_submodule(new_name)
            if not isinstance(module, nn.Linear):
                continue
            weight = original.get_submodule(module_name).weight.detach().to("cpu", torch.float64)
            if member.param in rows:
                weight = weight[rows[member.param]]
            kept = torch.tensor(member.layout.indices(cut.kept))
            yield _Consumer(new_name, module, weight, kept, feature)


def _mean_shift(c: _Consumer) -> tuple[torch.Tensor, torch.Tensor]:
    removed = torch.ones(c.weight.shape[1], dtype=torch.bool)
    removed[c.kept] = False
    return c.weight[:, c.kept], c.weight[:, removed] @ c.feature.mean[removed]


def _refit(c: _Consumer, damp: float, intercept: bool):
    """Solve the damped normal equations on second moments ``E[x x^T]`` (and,
    with ``intercept``, on ``[x_k, 1]``); damping leaves the intercept free."""
    moments = c.feature.gram / c.feature.count
    kept = c.kept
    inner = moments[kept][:, kept]
    cross = c.weight @ moments[:, kept]  # E[y x_k^T] without the original bias
    size = len(kept)
    ridge = damp * inner.diagonal().mean().clamp_min(1e-12)
    if intercept:
        mean = c.feature.mean.to(torch.float64)
        inner = torch.cat(
            [
                torch.cat([inner, mean[kept, None]], 1),
                torch.cat([mean[None, kept], torch.ones(1, 1, dtype=inner.dtype)], 1),
            ]
        )
        cross = torch.cat([cross, (c.weight @ mean)[:, None]], 1)
    diagonal = torch.zeros(inner.shape[0], dtype=inner.dtype)
    diagonal[:size] = ridge
    solution = torch.linalg.solve(inner + torch.diag(diagonal), cross.T).T
    return solution[:, :size], (solution[:, size] if intercept else None)


def _add_biases(model: nn.Module, names: list[str]) -> None:
    """Give the bias-free Linear layers ``names`` a zero bias, through a config
    flag (HF Llama's ``mlp_bias`` covers gate/up/down_proj of every layer) so
    that the config, ``save`` and ``load`` all still describe the model: every
    layer the flag governs gets a zero bias, the flag is set on the model's
    config and on the recorded original config the plans are replayed on."""
    if not names:
        return
    config = getattr(model, "config", None)
    if not hasattr(config, "to_dict"):
        raise InputError(
            f"compensate='bias': {names[0]} has no bias and {type(model).__name__} has no "
            "config to declare one (save/load could not rebuild it); use compensate='refit'"
        )
    present = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    biased = {n for n in present if model.get_submodule(n).bias is not None}
    missing, chosen = set(names), {}
    flags = [k for k, v in config.to_dict().items() if k.endswith("_bias") and v is False]
    for flag in flags:
        gained = _biased_with(model, flag) - biased
        if gained & missing and gained <= present:
            chosen[flag] = gained
            missing -= gained
    if missing:
        raise InputError(
            f"compensate='bias': {', '.join(sorted(missing)[:3])} has no bias and no flag of "
            f"{type(config).__name__} ({', '.join(flags) or 'none'}) adds one there, so the "
            "result would not reload; use compensate='refit'"
        )
    provenance = Provenance.of(model)
    for flag, gained in chosen.items():
        for name in sorted(gained):
            module = model.get_submodule(name)
            weight = module.weight
            module.bias = nn.Parameter(
                torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
            )
        setattr(config, flag, True)
        if provenance is not None and provenance.original_config is not None:
            provenance = dataclasses.replace(
                provenance, original_config={**provenance.original_config, flag: True}
            )
    if provenance is not None:
        remember(model, provenance)


def _biased_with(model: nn.Module, flag: str) -> set[str]:
    """Linear layers with a bias in ``type(model)`` built (on meta) with ``flag`` set."""
    config = copy.deepcopy(model.config)
    setattr(config, flag, True)
    try:
        with torch.device("meta"):
            probe = type(model)(config)
    except Exception:  # noqa: BLE001 - a config that cannot build declares nothing
        return set()
    return {n for n, m in probe.named_modules() if isinstance(m, nn.Linear) and m.bias is not None}


def _renaming(analysis: Analysis, removed):
    """Module names after blocks were removed and the rest renumbered."""
    gone = {(b.container, b.index) for b in removed}
    by_container: dict[str, list[int]] = {}
    for block in analysis.blocks:
        by_container.setdefault(block.container, []).append(block.index)
    new_index = {
        (container, old): new
        for container, indices in by_container.items()
        for new, old in enumerate(i for i in sorted(indices) if (container, i) not in gone)
    }

    def rename(name: str) -> str | None:
        for container in by_container:
            prefix = container + "."
            if name.startswith(prefix):
                head, _, rest = name[len(prefix) :].partition(".")
                key = (container, int(head))
                if key in gone:
                    return None
                return f"{prefix}{new_index[key]}" + (f".{rest}" if rest else "")
        return name

    return rename
