"""Comparing statistics gathered two ways."""

from __future__ import annotations

import torch


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference, relative to ``b``'s largest magnitude."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
