"""Layer-by-layer calibration: one block on the accelerator at a time.

For models larger than the accelerator's memory. The modules outside the stack
of repeated blocks (embeddings, rotary tables, the final norm and head) move to
the device once; the blocks move there one at a time and back afterwards.

For block ``i`` every batch runs through the model's own forward, with the
blocks before ``i`` *replayed* (each returns the stored output of block
``i - 1``, moved from CPU, and computes nothing) and the forward stopped as
soon as block ``i`` has run; its output is stored on CPU as the next block's
input. GPTQ-style scripts instead catch the inputs of block 0 once and call
every block on them; running the model's own forward costs the cheap prefix
once per block but gives each block exactly the keyword arguments the model
passes it, so per-layer masks (Gemma's sliding-window layers) and values
threaded through block outputs (T5's position bias) come out right. A last
pass replays every block to record the modules outside the stack (the head).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree
from tqdm.auto import tqdm

from surgeon.analyzers.blocks import repeated_stacks
from surgeon.errors import InputError

from .statistics import Statistics, recording

__all__ = ["calibrate_layerwise", "layer_stack"]


def layer_stack(model: nn.Module, blocks: Iterable[str] = ()) -> list[str]:
    """Names of the blocks calibrated one at a time, in order: the longest
    container among ``blocks`` (an analysis's repeated blocks), else the longest
    stack the analysis' own block finder sees in the module tree."""
    by_container: dict[str, list[str]] = {}
    for name in blocks:
        by_container.setdefault(name.rpartition(".")[0], []).append(name)
    if not by_container:
        by_container = repeated_stacks(model)
    if not by_container:
        raise InputError(
            f"layerwise calibration needs a stack of repeated blocks, and {type(model).__name__} "
            "has none (no ModuleList of two or more layers of one class): calibrate the whole "
            "model (layerwise=False)"
        )
    return max(by_container.values(), key=len)


class _Stop(Exception):
    """Raised once the block being calibrated has run: the rest is not needed."""


@dataclass
class _Replay:
    """Stands in for the forward of blocks already calibrated."""

    device: torch.device
    outputs: list[Any] = field(default_factory=list)  # per batch, on CPU
    batch: int = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _to(self.outputs[self.batch], self.device)


def calibrate_layerwise(
    model: nn.Module,
    batches: Sequence[torch.Tensor],
    stats: Statistics,
    *,
    device: torch.device,
    stack: Sequence[str] = (),
    gram_for: Iterable[str] = (),
    blocks: Iterable[str] = (),
    progress: bool = True,
) -> Statistics:
    """Fill ``stats`` block by block (see the module docstring). ``stack`` names
    candidate blocks (an analysis's); ``blocks`` those whose influence is wanted."""
    names = layer_stack(model, stack)
    modules = dict(model.named_modules())
    gram_for, blocks = set(gram_for), set(blocks)
    inside = {f"{b}.{n}" if n else b: m for b in names for n, m in modules[b].named_modules()}
    outside = {name: m for name, m in modules.items() if name not in inside}
    replay = _Replay(device)
    restore_outside = _move(outside.values(), device)
    try:
        for position, name in enumerate(
            tqdm(names, desc="calibrating layerwise", unit="block", disable=not progress)
        ):
            block = modules[name]
            mine = {n: m for n, m in inside.items() if n == name or n.startswith(name + ".")}
            restore_block = _move(mine.values(), device)
            try:
                with (
                    _replaying(modules, names[:position], replay),
                    recording(stats, mine, gram_for, blocks),
                ):
                    replay.outputs = _run_until(model, block, batches, device, replay)
            finally:
                restore_block()
        with _replaying(modules, names, replay), recording(stats, outside, gram_for, blocks):
            for replay.batch, ids in enumerate(batches):
                _forward(model, ids, device)
    finally:
        restore_outside()
    stats.samples += sum(ids.shape[0] for ids in batches)
    return stats


def _run_until(
    model: nn.Module,
    block: nn.Module,
    batches: Sequence[torch.Tensor],
    device: torch.device,
    replay: _Replay,
) -> list[Any]:
    """Run every batch up to and including ``block``; its outputs, on CPU."""
    outputs: list[Any] = []

    def stop(module, args, output):
        outputs.append(_to(output, torch.device("cpu")))
        raise _Stop

    handle = block.register_forward_hook(stop)  # after the recording hooks: runs last
    try:
        for replay.batch, ids in enumerate(batches):
            try:
                _forward(model, ids, device)
            except _Stop:
                continue
            raise InputError(
                f"layerwise calibration: block {type(block).__name__} never ran in the model's "
                "forward; calibrate the whole model (layerwise=False)"
            )
    finally:
        handle.remove()
    return outputs


def _forward(model: nn.Module, ids: torch.Tensor, device: torch.device) -> None:
    with torch.no_grad():
        model(input_ids=ids.to(device), use_cache=False)


@contextlib.contextmanager
def _replaying(
    modules: dict[str, nn.Module], names: Sequence[str], replay: _Replay
) -> Iterator[None]:
    """Blocks ``names`` replay stored outputs instead of computing, while in the context."""
    blocks = [modules[n] for n in names]
    try:
        for block in blocks:
            block.forward = replay  # an instance attribute shadows the class's forward
        yield
    finally:
        for block in blocks:
            block.__dict__.pop("forward", None)


def _move(modules: Iterable[nn.Module], device: torch.device) -> Callable[[], None]:
    """Move the own parameters and buffers of ``modules`` to ``device``; return
    what moves them back. The original tensors are kept, so moving back copies
    nothing (the weights do not change during calibration)."""
    params: list[tuple[nn.Parameter, torch.Tensor]] = []
    buffers: list[tuple[nn.Module, str, torch.Tensor]] = []
    for module in modules:
        for param in module._parameters.values():
            if param is not None and param.device != device:
                params.append((param, param.data))
                param.data = param.data.to(device)
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.device != device:
                buffers.append((module, name, buffer))
                module._buffers[name] = buffer.to(device)

    def restore() -> None:
        for param, data in params:
            param.data = data
        for module, name, buffer in buffers:
            module._buffers[name] = buffer

    return restore


def _to(tree: Any, device: torch.device) -> Any:
    return pytree.tree_map_only(torch.Tensor, lambda t: t.to(device), tree)
