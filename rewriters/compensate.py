"""Compensation after a cut: refit the layers that read a cut axis.

For a consumer ``y = W x`` whose inputs lost the units outside ``k``, the refit
``W' = argmin ||X W^T - X_k W'^T||`` over the calibration activations is
``W' = W G[:, k] (G[k, k] + lambda I)^{-1}`` with ``G = X^T X`` (OBS-style
reconstruction, damped by ``lambda = damp * mean(diag G[k, k])``).
"""

from __future__ import annotations

import torch
from torch import nn

from surgeon.analyzers import Analysis
from surgeon.plan import Plan

from .resolve import resolve

__all__ = ["refit_consumers"]


def refit_consumers(
    original: nn.Module,
    pruned: nn.Module,
    plan: Plan,
    analysis: Analysis,
    stats,
    damp: float = 0.01,
) -> list[str]:
    """Refit every ``nn.Linear`` whose input features were cut; return their names."""
    resolved = resolve(plan, analysis)
    rename = _renaming(analysis, resolved.blocks)
    refitted = []
    for cut in resolved.cuts:
        for member in cut.group.members:
            module_name, _, attr = member.param.rpartition(".")
            feature = stats.inputs.get(module_name) if stats else None
            new_name = rename(module_name)
            if attr != "weight" or member.dim != 1 or feature is None or feature.gram is None:
                continue
            if new_name is None:
                continue  # its block was removed
            module = pruned.get_submodule(new_name)
            if not isinstance(module, nn.Linear):
                continue
            kept = torch.tensor(member.layout.indices(cut.kept))
            weight = original.get_submodule(module_name).weight.detach().to("cpu", torch.float64)
            gram = feature.gram
            inner = gram[kept][:, kept]
            inner = inner + damp * inner.diagonal().mean().clamp_min(1e-12) * torch.eye(
                len(kept), dtype=inner.dtype
            )
            refit = torch.linalg.solve(inner, (weight @ gram[:, kept]).T).T
            with torch.no_grad():
                module.weight.copy_(refit.to(module.weight.dtype))
            refitted.append(new_name)
    return refitted


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
