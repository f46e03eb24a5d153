"""Re-checking a saved cut against its original (``surgeon verify ORIGINAL OUT``).

The manifest's plans are replayed on the original, one at a time, and each
step is verified against its input with the removed units masked
(:func:`surgeon.verify`). The saved tensors are then compared with the
replayed cut, cast to the dtype they were saved in: equal bit for bit means the
directory holds exactly the verified cut. A compensated directory differs by
design in the layers that read a cut axis (``down_proj``, ``o_proj``: their
weights, and a bias the compensation may add); those tensors are listed as not
checked, and any other difference fails the check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from surgeon.analyzers import analyze
from surgeon.checkpoint.directory import load_directory
from surgeon.checkpoint.persist import load, read_manifest
from surgeon.errors import SurgeonError
from surgeon.plan.plan import Plan
from surgeon.rewriters import apply, resolve
from surgeon.rewriters.depth import renumbered
from surgeon.verify import VerifyReport, verify

__all__ = ["Recheck", "recheck"]


@dataclass(frozen=True)
class Recheck:
    """What ``recheck`` found: one verify report per replayed plan, and how the
    saved tensors compare with the replayed cut."""

    steps: tuple[VerifyReport, ...]
    identical: int  # saved tensors equal to the replayed, verified cut
    zero_biases: int  # biases the cut lacks, saved as zeros (a config flag declares them)
    compensated: tuple[str, ...]  # differ by design: not checked
    unexpected: tuple[str, ...]  # differ (or are missing) where nothing may change
    compensation: str | None
    dtype: torch.dtype | None  # the saved tensors' floating dtype

    @property
    def ok(self) -> bool:
        """Every step verified (a group inexact by nature fails too) and every
        tensor not changed on purpose equal to the verified cut."""
        return bool(self.steps) and all(s.ok for s in self.steps) and not self.unexpected

    def __str__(self) -> str:
        lines = []
        for number, step in enumerate(self.steps, 1):
            which = f"plan {number} of {len(self.steps)}" if len(self.steps) > 1 else "the plan"
            before = "; before compensation" if self.compensation else ""
            lines.append(f"{which} replayed on the original{before}, against it masked:")
            lines.append(str(step))
        total = self.identical + self.zero_biases + len(self.compensated) + len(self.unexpected)
        dtype = str(self.dtype).removeprefix("torch.")
        lines.append(
            f"saved tensors: {self.identical} of {total} equal to the replayed cut "
            f"(cast to {dtype}) bit for bit"
            + (
                f", {self.zero_biases} all-zero biases where the cut has none (declared by a "
                "config flag such as mlp_bias: they add nothing)"
            )
            * bool(self.zero_biases)
        )
        if self.compensated:
            shown = ", ".join(self.compensated[:4]) + (" ..." * (len(self.compensated) > 4))
            lines.append(
                f"not checked: {len(self.compensated)} tensors of the layers compensated after "
                f"the cut ({self.compensation}): they differ from the masked original by "
                f"design ({shown})"
            )
        if self.unexpected:
            lines.append(
                f"MISMATCH: {len(self.unexpected)} tensors differ from the replayed cut where "
                f"nothing may change: {', '.join(self.unexpected[:5])}"
            )
        lines.append(f"result: {'ok' if self.ok else 'FAILED'}")
        return "\n".join(lines)


def recheck(original_dir: str | Path, pruned_dir: str | Path) -> Recheck:
    """Replay the saved plans of ``pruned_dir`` on the model in ``original_dir``,
    verify every step and compare the saved tensors with the result."""
    manifest = read_manifest(Path(pruned_dir))
    plans = [Plan.from_dict(p) for p in manifest["plans"]]
    if not plans:
        raise SurgeonError(f"'{pruned_dir}' holds no plan: there is no cut to verify")
    saved = load(Path(pruned_dir)).state_dict()
    current = load_directory(original_dir)
    steps, may_differ = [], set()
    for plan in plans:
        analysis = analyze(current)
        cut = apply(current, plan, analysis=analysis)
        steps.append(verify(current, cut, plan, analysis=analysis))
        may_differ = _consumers(plan, analysis) if manifest.get("compensation") else set()
        current = cut
    return _compare(saved, current, may_differ, manifest.get("compensation"), tuple(steps))


def _consumers(plan: Plan, analysis) -> set[str]:
    """Modules (named in the cut model) whose inputs the plan cuts: the layers a
    compensation may change."""
    rename = renumbered(plan.remove_blocks)
    names = {
        rename(member.module)
        for cut in resolve(plan, analysis).cuts
        for member in cut.group.members
        if member.dim == 1
    }
    return {name for name in names if name is not None}


def _compare(
    saved: dict[str, torch.Tensor],
    replayed: nn.Module,
    may_differ: set[str],
    compensation: str | None,
    steps: tuple[VerifyReport, ...],
) -> Recheck:
    expected = replayed.state_dict()
    floating = [t.dtype for t in saved.values() if t.is_floating_point()]
    dtype = max(set(floating), key=floating.count) if floating else None
    identical, zero_biases, compensated, unexpected = 0, 0, [], []
    for name in sorted(set(saved) | set(expected)):
        mine, theirs = saved.get(name), expected.get(name)
        if mine is not None and theirs is not None and _equal(mine, theirs):
            identical += 1
        elif theirs is None and name.endswith(".bias") and not mine.any():
            zero_biases += 1
        elif name.rpartition(".")[0] in may_differ:
            compensated.append(name)
        else:
            unexpected.append(name)
    return Recheck(
        steps, identical, zero_biases, tuple(compensated), tuple(unexpected), compensation, dtype
    )


def _equal(saved: torch.Tensor, replayed: torch.Tensor) -> bool:
    if saved.shape != replayed.shape:
        return False
    return torch.equal(saved, replayed.to(saved.dtype))
