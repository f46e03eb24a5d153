"""``HealOptions``: every knob of a healing run, as plain data.

Each field carries its type, its choices and its help in ``metadata`` so the
command line is generated from this one place (:mod:`surgeon.heal.cli`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from surgeon.errors import InputError
from surgeon.options import check_fields, option, refuse_unknown

__all__ = ["DEFAULT_LORA_LR", "DEFAULT_LR", "HealOptions"]

# The defaults (learning rate, sequence length, batch) were chosen by measurement on
# the tiny-llama fixture (bench/heal.py, docs/benchmarks.md "Healing"): 1e-3 beat
# 5e-4, 2e-3 and 4e-3, and 64 x 256 tokens a step beat 32 x 512, 64 x 512, 16 x 512
# and 16 x 1024 on held-out training text. Models served with long contexts may want
# a longer seq_len. The LoRA step is a common larger choice, not yet swept here.
DEFAULT_LR = 1e-3
DEFAULT_LORA_LR = 2e-3


@dataclass(frozen=True)
class HealOptions:
    """Options of a healing run (:func:`surgeon.heal`)."""

    tokens: int = option(10_000_000, "training tokens to distil on", minimum=1)
    seq_len: int = option(256, "tokens per packed training sequence", minimum=2)
    batch_size: int = option(64, "sequences per optimizer step, over all processes", minimum=1)
    micro_batch: int | None = option(
        None,
        "sequences per forward and process; gradients accumulate up to batch_size "
        "(default: the whole batch)",
        minimum=1,
    )
    lr: float | None = option(
        None,
        f"peak learning rate (default: {DEFAULT_LR:g}; {DEFAULT_LORA_LR:g} with --lora)",
        minimum=0,
    )
    schedule: str = option(
        "cosine", "learning-rate decay after warm-up", choices=("cosine", "linear", "constant")
    )
    warmup: float = option(0.02, "share of the steps spent warming up linearly", minimum=0)
    min_lr: float = option(0.1, "final learning rate as a share of the peak", minimum=0)
    weight_decay: float = option(0.0, "AdamW weight decay", minimum=0)
    grad_clip: float = option(1.0, "clip the gradient norm to this (0: no clipping)", minimum=0)
    temperature: float = option(1.0, "softmax temperature of the logit KL", minimum=0)
    top_k: int = option(0, "distil only the teacher's k largest logits (0: all)", minimum=0)
    ce_weight: float = option(
        0.0, "weight of next-token cross-entropy; 1 - it weighs the KL (1: no teacher)", minimum=0
    )
    hidden_weight: float = option(
        0.0, "weight of the hidden-state MSE to the teacher, where the shapes match", minimum=0
    )
    precision: str = option(
        "auto",
        "bf16 autocast, fp32, or auto (bf16 on a GPU that has it)",
        choices=("auto", "bf16", "fp32"),
    )
    gradient_checkpointing: bool = option(False, "recompute activations in backward (less memory)")
    lora: bool = option(False, "train LoRA adapters (PEFT) and merge them into dense weights")
    lora_rank: int = option(64, "LoRA rank", minimum=1)
    lora_alpha: float = option(
        128.0, "LoRA alpha (the update is scaled by alpha / rank)", minimum=0
    )
    eval_every: int = option(0, "evaluate every N tokens (0: ten times per run)", minimum=0)
    eval_windows: int = option(64, "held-out windows of 256 tokens per evaluation", minimum=1)
    patience: int = option(0, "stop after N evaluations without improvement (0: never)", minimum=0)
    checkpoint_dir: str | None = option(None, "directory for training checkpoints")
    checkpoint_every: int = option(
        0, "write a checkpoint every N tokens (0: at every evaluation)", minimum=0
    )
    resume: bool = option(False, "continue from the latest checkpoint in checkpoint_dir")
    seed: int = option(0, "seed of the data order", minimum=0)
    teacher_device: str | None = option(None, "device of the teacher (default: the student's)")
    progress: bool = option(True, "show a progress bar (loss, tokens/s, ETA)")

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("warmup", "min_lr", "ce_weight"):
            if getattr(self, name) > 1:
                raise InputError(f"heal: {name} must be in [0, 1], not {getattr(self, name)!r}")
        if self.temperature <= 0 or self.lr == 0:
            raise InputError("heal: temperature and lr must be positive")
        if self.resume and not self.checkpoint_dir:
            raise InputError("heal: resume=True needs checkpoint_dir=... (where to resume from)")

    @property
    def peak_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return DEFAULT_LORA_LR if self.lora else DEFAULT_LR

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def build(cls, base: HealOptions | None = None, **changes: Any) -> HealOptions:
        """``base`` (or the defaults) with ``changes``; unknown names are refused."""
        refuse_unknown(cls, changes, "heal")
        values = {f.name: getattr(base, f.name) for f in fields(cls)} if base else {}
        return cls(**{**values, **changes})

    def run_shape(self) -> dict[str, Any]:
        """The options a checkpoint must share with the run that resumes it."""
        keep = ("tokens", "seq_len", "batch_size", "schedule", "warmup", "min_lr", "seed", "lora")
        return {name: getattr(self, name) for name in keep} | {"lr": self.peak_lr}
