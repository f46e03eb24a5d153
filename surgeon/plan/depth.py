"""How many whole blocks to remove so a pruned model runs about as fast as it is small.

Width cuts shrink the weights a token reads, not the fixed work of each block:
norms, rotary embeddings, residual adds, the attention kernel, and the latency
of a dozen small kernels. Measured on an H100 (docs/benchmarks.md, "GPU speed";
Llama-3-8B shape, bf16, decode steps replayed as CUDA graphs), that fixed work
costs a block as much as reading another ~170M parameters (a least-squares fit
over the aligned shapes in bench/results/gpu_speed_h100.json: about 120 us per
block against 0.68 us per million parameters read),
so at 50% widths alone made batch-1 decode only 0.77x as much faster as the
model got smaller. Removing a block removes its fixed work too.

The estimate: the time of one decode token is the parameters it reads
(:class:`~surgeon.analyzers.sizes.ModelSize`) plus ``block_overhead`` per
block. ``layers="auto"`` removes the fewest blocks whose estimated speedup is
at least :data:`SPEED_EFFICIENCY` of the parameter reduction ratio, and never
more than :data:`MAX_DEPTH_SHARE` of the target (depth costs quality: "Pruning
quality"). Where widths alone reach it (Llama-3-8B at 20%), no block goes.
"""

from __future__ import annotations

from dataclasses import dataclass

from surgeon.analyzers import Analysis
from surgeon.plan.costs import covered

__all__ = ["BLOCK_OVERHEAD", "MAX_DEPTH_SHARE", "SPEED_EFFICIENCY", "DepthChoice", "choose_depth"]

BLOCK_OVERHEAD = 170_000_000  # parameters read that cost as long as one block's fixed work
SPEED_EFFICIENCY = 0.9  # wanted: speedup >= this x (parameters before / after)
MAX_DEPTH_SHARE = 0.5  # whole blocks take at most this share of the target


@dataclass(frozen=True)
class DepthChoice:
    """What ``layers="auto"`` decided, and why."""

    layers: int  # whole blocks to remove
    efficiency: float  # estimated speedup / parameter ratio with them removed
    width_only: float  # the same with widths only
    limit: int  # most blocks MAX_DEPTH_SHARE of the target allows
    reason: str = ""  # why no estimate applies, when none does

    def __str__(self) -> str:
        if self.reason:
            return f"layers='auto': no whole blocks ({self.reason})"
        short = self.efficiency < SPEED_EFFICIENCY
        capped = " (the most the depth share allows)" if short else ""
        return (
            f"layers='auto': {self.layers} whole blocks{capped}; estimated decode speedup "
            f"{self.efficiency:.2f} of the parameter ratio (widths only: {self.width_only:.2f})"
        )


def choose_depth(
    analysis: Analysis,
    removed_params: float,
    cut_kinds: tuple[str, ...],
    block_overhead: int = BLOCK_OVERHEAD,
) -> DepthChoice:
    """The fewest removable blocks for which the estimate reaches
    :data:`SPEED_EFFICIENCY`, given that ``removed_params`` block parameters go
    in all (whole blocks count toward them; widths of ``cut_kinds`` do the rest)."""
    size = analysis.size
    removable = [b.name for b in analysis.blocks if b.removable]
    if size is None or not size.generates:
        return DepthChoice(0, 1.0, 1.0, 0, "not a generative model: the estimate is for decoding")
    if not removable or removed_params <= 0:
        return DepthChoice(0, 1.0, 1.0, 0, "no removable blocks" if not removable else "no cut")
    block_params, block_reads = _block_costs(analysis, removable, size.read_fraction)
    if block_params <= 0:
        return DepthChoice(0, 1.0, 1.0, 0, "the blocks hold no prunable parameters")
    width_reads_per_param = _reads_per_param(analysis, cut_kinds, size.read_fraction)
    limit = min(int(MAX_DEPTH_SHARE * removed_params // block_params), len(removable) - 1)
    count = len(analysis.blocks)

    def efficiency(layers: int) -> float:
        widths = removed_params - layers * block_params
        reads = size.reads - layers * block_reads - widths * width_reads_per_param
        dense = size.reads + count * block_overhead
        pruned = reads + (count - layers) * block_overhead
        return (dense / pruned) / (size.params / (size.params - removed_params))

    layers = next((k for k in range(limit + 1) if efficiency(k) >= SPEED_EFFICIENCY), limit)
    return DepthChoice(layers, efficiency(layers), efficiency(0), limit)


def _block_costs(analysis: Analysis, blocks: list[str], read_fraction) -> tuple[float, float]:
    """Mean parameters and mean reads per token of one removable block (what
    counts toward a target: parameters of non-hidden groups inside it)."""
    inside = tuple(f"{name}." for name in blocks)
    params = covered(analysis, inside=inside) / len(blocks)
    return params, covered(analysis, read_fraction, inside) / len(blocks)


def _reads_per_param(analysis: Analysis, kinds: tuple[str, ...], read_fraction) -> float:
    """Reads per token that removing one parameter of the cut groups saves (1
    for Linear weights, ``top_k / experts`` for fused experts)."""
    total = covered(analysis, kinds=kinds)
    return covered(analysis, read_fraction, kinds=kinds) / total if total else 1.0
