"""Distillation losses: the student learns the teacher's next-token distribution.

Logit KL at a temperature (optionally on the teacher's top-k logits only),
optionally mixed with next-token cross-entropy, plus an optional MSE between
hidden states wherever student and teacher have the same width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from surgeon.heal.options import HealOptions

__all__ = ["cross_entropy", "hidden_mse", "logit_kl", "mixed_loss"]


def logit_kl(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0, top_k: int = 0
) -> torch.Tensor:
    """Mean over tokens of KL(teacher || student) on ``[..., vocab]`` logits,
    scaled by ``temperature**2`` (Hinton et al.) so gradients keep their size.
    With ``top_k`` the teacher is its k largest logits renormalised."""
    s = student.float().flatten(0, -2) / temperature
    t = teacher.float().flatten(0, -2) / temperature
    log_s = F.log_softmax(s, dim=-1)
    if top_k:
        values, index = t.topk(min(top_k, t.shape[-1]), dim=-1)
        log_t = F.log_softmax(values, dim=-1)
        per_token = (log_t.exp() * (log_t - log_s.gather(-1, index))).sum(-1)
    else:
        log_t = F.log_softmax(t, dim=-1)
        per_token = (log_t.exp() * (log_t - log_s)).sum(-1)
    return per_token.mean() * temperature**2


def cross_entropy(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of ``logits`` ``[b, n, vocab]`` on ``ids`` ``[b, n]``."""
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)
    )


def hidden_mse(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean normalised MSE between matching hidden states: all of them when the
    depths agree, else the last (the final norm's output); states of another
    width are skipped. Zero when nothing matches."""
    same_depth = len(student) == len(teacher)
    pairs = list(zip(student, teacher, strict=True)) if same_depth else [(student[-1], teacher[-1])]
    terms = [
        F.mse_loss(s.float(), t.float()) / t.float().pow(2).mean().clamp_min(1e-6)
        for s, t in pairs
        if s.shape == t.shape
    ]
    if not terms:
        return student[-1].new_zeros((), dtype=torch.float32)
    return torch.stack(terms).mean()


def mixed_loss(
    ids: torch.Tensor, student_out, teacher_out, options: HealOptions
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss and its parts, detached (for the progress bar and the
    history; left on the device so that no step waits for the GPU)."""
    parts: dict[str, torch.Tensor] = {}
    if options.ce_weight < 1:
        parts["kd"] = logit_kl(
            student_out.logits, teacher_out.logits, options.temperature, options.top_k
        )
    if options.ce_weight > 0:
        parts["ce"] = cross_entropy(student_out.logits, ids)
    loss = (1 - options.ce_weight) * parts.get("kd", 0.0) + options.ce_weight * parts.get("ce", 0.0)
    if options.hidden_weight > 0 and teacher_out is not None:
        parts["hidden"] = hidden_mse(student_out.hidden_states, teacher_out.hidden_states)
        loss = loss + options.hidden_weight * parts["hidden"]
    return loss, {name: value.detach() for name, value in parts.items()}
