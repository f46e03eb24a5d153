"""LoRA adapters through PEFT, merged back into plain dense weights.

For users whose memory does not hold a full optimizer state: only the
adapters train, and ``merged`` folds them into the ``nn.Linear`` weights so
the healed model has exactly the pruned model's modules and shapes.
"""

from __future__ import annotations

from torch import nn

from surgeon.errors import InputError

__all__ = ["merged", "with_adapters"]


def with_adapters(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    """``model`` wrapped by PEFT with LoRA on every linear layer but the output head."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:  # pragma: no cover - peft is a dependency
        raise InputError("heal: lora=True needs the 'peft' package (pip install peft)") from None
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear", bias="none"
    )
    try:
        return get_peft_model(model, config)
    except ValueError as error:
        raise InputError(f"heal: LoRA cannot wrap {type(model).__name__}: {error}") from None


def merged(model: nn.Module) -> nn.Module:
    """The plain model with the adapters folded into its weights (no-op without)."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model
