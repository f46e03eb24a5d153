"""What a healing run returns, and its progress bar."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from surgeon.heal.options import HealOptions

__all__ = ["HealResult", "Progress"]


@dataclass
class HealResult:
    model: nn.Module  # the healed student: plain modules, dense weights, eval mode
    options: HealOptions
    history: list[dict[str, Any]] = field(repr=False)  # losses and lr every few steps
    evaluations: list[dict[str, Any]] = field(repr=False)  # held-out perplexity by tokens
    tokens: int = 0  # tokens trained on (all processes)
    steps: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    tokens_per_second: float = 0.0
    peak_memory: int | None = None  # bytes on the GPU (None on the CPU)
    held_out: str = "none"  # where the held-out windows came from
    resumed_from: int = 0  # the checkpoint's step when the run resumed

    @property
    def perplexity_before(self) -> float | None:
        first = self.evaluations[0] if self.evaluations else None
        return first["perplexity"] if first and first["step"] == 0 else None

    @property
    def perplexity_after(self) -> float | None:
        return self.evaluations[-1]["perplexity"] if self.evaluations else None

    def __str__(self) -> str:
        lines = [
            f"healed: {self.tokens:,} tokens in {self.steps} steps, {self.seconds:.0f} s "
            f"({self.tokens_per_second:,.0f} tokens/s)"
            + (", stopped early" if self.stopped_early else "")
        ]
        if self.perplexity_after is not None:
            before = self.perplexity_before
            start = f"{before:.3f} -> " if before is not None else ""
            lines.append(
                f"held-out perplexity ({self.held_out}): {start}{self.perplexity_after:.3f}"
            )
        if self.history:
            last = self.history[-1]
            lines.append(
                "final loss: "
                + ", ".join(f"{k} {last[k]:.4f}" for k in ("loss", "kd", "ce") if k in last)
            )
        if self.peak_memory is not None:
            lines.append(f"peak GPU memory: {self.peak_memory / 2**30:.2f} GiB")
        return "\n".join(lines)


class Progress:
    """A tqdm bar counted in tokens (so its rate is tokens/s and its ETA is
    the run's), showing the latest loss, perplexity and learning rate; only the
    main process draws it."""

    def __init__(self, options: HealOptions, steps: int, start: int, main: bool) -> None:
        from tqdm.auto import tqdm

        per_step = options.batch_size * options.seq_len
        self.per_step, self.shown = per_step, {}
        self.bar = tqdm(
            total=steps * per_step,
            initial=start * per_step,
            unit="tok",
            unit_scale=True,
            desc="heal",
            disable=not (options.progress and main),
            dynamic_ncols=True,
        )
        self.step = start

    def show(self, step: int, values: dict[str, Any]) -> None:
        self.bar.update((step - self.step) * self.per_step)
        self.step = step
        for key in ("loss", "ppl", "lr"):
            if values.get(key) is not None:
                self.shown[key] = f"{values[key]:.3g}"
        self.bar.set_postfix(self.shown, refresh=False)

    def close(self) -> None:
        self.bar.close()
