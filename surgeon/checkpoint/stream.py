"""Streaming surgery: cut a sharded safetensors checkpoint on disk, tensor by tensor.

Models of 8B to 70B parameters do not fit twice (often not once) in memory, but
nothing in a structured cut needs the whole model at once:

1. the structure comes from ``config.json`` on the meta device: ``analyze``
   finds the groups, and ``apply`` cuts the meta model, which yields the cut
   config, every output shape and the new names of renumbered layers;
2. the plan is given (a :class:`~surgeon.Plan` or its JSON), or made by the
   planner from a weight-only criterion (``magnitude``, ``magnitude-l1``,
   ``random``) that reads each member tensor from disk when it is scored;
3. every tensor of every input shard is read in slabs of rows, sliced with
   the same kept indices ``apply`` uses, and appended to the output shard
   (per-expert MoE tensors, which transformers stacks at load time, are read
   expert by expert and written stacked: :mod:`surgeon.checkpoint.converted`).

Peak memory is the meta analysis plus one slab (and, while scoring, one
member tensor in float64), whatever the model's size. Output goes to a
temporary directory next to ``out_dir`` that is renamed at the end, so a
failure leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from surgeon.analyzers import Analysis, analyze
from surgeon.analyzers.names import ParameterNames
from surgeon.checkpoint.converted import Source, StackedSource, checkpoint_sources
from surgeon.checkpoint.persist import (
    INDEX,
    MANIFEST,
    WEIGHTS,
    read_manifest,
    replay,
    write_description,
)
from surgeon.checkpoint.shards import ShardWriter, open_checkpoint, read_rows
from surgeon.checkpoint.stream_plan import DiskParameters, given_plan, plan_options_for, scored_plan
from surgeon.errors import SurgeonError
from surgeon.plan.plan import Plan
from surgeon.rewriters import apply
from surgeon.rewriters.companions import unread_companions
from surgeon.rewriters.resolve import kept_indices, resolve

__all__ = ["StreamResult", "prune_checkpoint"]

# Files besides the weights and config that describe the model to its users.
_COPIED = (
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "chat_template*",
    "preprocessor_config.json",
    "processor_config.json",
)


@dataclass(frozen=True)
class StreamResult:
    """What :func:`prune_checkpoint` wrote."""

    path: Path
    plan: Plan
    params_before: int
    params_after: int
    bytes_in: int  # tensor data read from the source checkpoint
    bytes_out: int  # tensor data written
    shards: int
    plain_from_pretrained: bool
    criterion: dict[str, str] = field(default_factory=dict)  # group -> criterion used
    seconds: dict[str, float] = field(default_factory=dict)  # per phase
    peak_rss_gb: dict[str, float] = field(default_factory=dict)  # the process's peak after each

    def __str__(self) -> str:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        return "\n".join(
            [
                f"parameters: {self.params_before:,} -> {self.params_after:,} "
                f"({self.params_after / self.params_before:.1%})",
                f"tensor data: {_size(self.bytes_in)} -> {_size(self.bytes_out)} "
                f"in {self.shards} shard(s)",
                f"criteria used: {', '.join(sorted(set(self.criterion.values()))) or 'none'}",
                f"plain from_pretrained: {'yes' if self.plain_from_pretrained else 'no'}",
                f"time: {phases}",
            ]
            + (
                [f"peak RSS after each phase (GB): {memory}"]
                if (memory := ", ".join(f"{k} {v:.2f}" for k, v in self.peak_rss_gb.items()))
                else []
            )
        )


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes} B"


@dataclass(frozen=True)
class _Job:
    """One output tensor: where it comes from and which indices it keeps."""

    name: str
    source: Source  # a TensorEntry, or a StackedSource of per-expert tensors
    dims: dict[int, list[int]]  # dim -> kept indices (empty: copied as is)
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count * self.source.torch_dtype.itemsize


def prune_checkpoint(
    src_dir: str | Path,
    out_dir: str | Path,
    ratio: float | None = None,
    *,
    plan: Plan | Mapping[str, Any] | str | Path | None = None,
    criterion: str = "magnitude",
    seed: int = 0,
    progress: bool = True,
    **plan_options: Any,
) -> StreamResult:
    """Cut the safetensors checkpoint in ``src_dir`` and write it to ``out_dir``.

    Give ``plan`` (a :class:`~surgeon.Plan`, its dict, or the path of its JSON)
    or ``ratio``/``params=`` with a weight-only ``criterion`` and further
    :class:`~surgeon.PlanOptions` (``kinds``, ``allocation``, ``heads``,
    ``round_to``, ``ignore``, ``hf_loadable``...). The output holds the cut
    shards, ``model.safetensors.index.json``, ``config.json`` and the
    ``surgeon.json`` manifest exactly as :func:`surgeon.save` writes them, so
    :func:`surgeon.load` (and plain ``from_pretrained`` for uniform cuts)
    reloads it; the tokenizer and generation config are copied.
    """
    from surgeon.checkpoint.directory import load_directory, model_directory

    started = time.perf_counter()
    src = model_directory(src_dir)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SurgeonError(f"output directory '{out}' is not empty")
    given = given_plan(plan, ratio, plan_options)
    options = None if given is not None else plan_options_for(ratio, criterion, plan_options)
    entries = open_checkpoint(src)
    model = (
        replay(read_manifest(src))  # a saved cut: its structure, its chain of plans
        if (src / MANIFEST).is_file()
        else load_directory(src, weights=False)
    )
    sources = checkpoint_sources(model, entries, src)
    analysis = analyze(model)
    seconds = {"analysis": time.perf_counter() - started}
    memory = {"analysis": _peak_rss_gb()}
    started = time.perf_counter()
    used: dict[str, str] = {}
    if given is None:
        weights = DiskParameters(sources, ParameterNames(model).tied)
        plan, used = scored_plan(analysis, weights, options, criterion, seed, progress)
    else:
        plan = given
    seconds["scoring"] = time.perf_counter() - started
    memory["scoring"] = _peak_rss_gb()
    started = time.perf_counter()
    jobs, before = _jobs(model, analysis, plan, sources)
    seconds["cut on meta"] = time.perf_counter() - started
    memory["cut on meta"] = _peak_rss_gb()
    started = time.perf_counter()
    temporary = out.parent / f".{out.name}.partial-{os.getpid()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary.mkdir()
    try:
        shards = _write_shards(jobs, temporary, progress)
        shapes = {job.name: list(job.shape) for job in jobs}
        loadable = write_description(model, temporary, shapes, ParameterNames(model).tied)
        _copy_extras(src, temporary)
        os.replace(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    seconds["writing"] = time.perf_counter() - started
    memory["writing"] = _peak_rss_gb()
    return StreamResult(
        out,
        plan,
        before,
        sum(p.numel() for p in model.parameters()),
        sum(e.nbytes for e in entries.values()),
        sum(job.nbytes for job in jobs),
        shards,
        loadable,
        used,
        seconds,
        {k: v for k, v in memory.items() if v is not None},
    )


def _peak_rss_gb() -> float | None:
    """The process's peak resident set so far (what ``/usr/bin/time -v`` reports)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024) / 1e9


def _jobs(
    model: nn.Module, analysis: Analysis, plan: Plan, sources: dict[str, Source]
) -> tuple[list[_Job], int]:
    """Cut the meta model in place and list every output tensor with its source.

    Modules keep their identity through ``apply`` (removed layers renumber the
    others), so each output name maps back to its checkpoint name through its
    module. Returns the jobs and the parameter count before the cut."""
    slices = kept_indices(resolve(plan, analysis))
    slices.update(unread_companions(model, slices, analysis))  # as apply cuts them
    before = sum(p.numel() for p in model.parameters())
    names = ParameterNames(model)
    modules = [m for _, m in model.named_modules(remove_duplicate=False)]  # alive past apply
    old_paths = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
    apply(model, plan, inplace=True, analysis=analysis)
    tied = ParameterNames(model).tied
    new_modules = dict(model.named_modules(remove_duplicate=False))
    jobs = []
    for name, tensor in model.state_dict().items():
        if name in tied:
            continue
        module_path, _, attr = name.rpartition(".")
        old_module = old_paths.get(id(new_modules.get(module_path)), module_path)
        source_name = f"{old_module}.{attr}" if old_module else attr
        stored = (source_name, *names.aliases.get(source_name, ()))  # a tied one: any name
        source = next((sources[n] for n in stored if n in sources), None)
        if source is None:
            raise SurgeonError(
                f"the checkpoint has no tensor '{source_name}' (needed for '{name}' of the cut "
                "model); it does not match the model config.json builds"
            )
        dims = slices.get(source_name, {})
        shape = tuple(len(dims[d]) if d in dims else size for d, size in enumerate(source.shape))
        if shape != tuple(tensor.shape):
            raise SurgeonError(
                f"tensor '{source_name}' {source.shape} would be cut to {shape}, but the cut "
                f"model expects {tuple(tensor.shape)} for '{name}'"
            )
        jobs.append(_Job(name, source, dims, shape))
    del modules
    return jobs, before


def _write_shards(jobs: list[_Job], directory: Path, progress: bool) -> int:
    """One output shard per input shard that still has tensors, named as
    ``save_pretrained`` names them, and the index. Returns the shard count."""
    by_file: dict[Path, list[_Job]] = {}
    for job in jobs:
        by_file.setdefault(job.source.file, []).append(job)
    groups = list(by_file.values())
    names = (
        [WEIGHTS]
        if len(groups) == 1
        else [f"model-{i:05d}-of-{len(groups):05d}.safetensors" for i in range(1, len(groups) + 1)]
    )
    bar = tqdm(total=len(jobs), desc="writing", unit="tensor", disable=not progress)
    weight_map = {}
    for file_name, group in zip(names, groups, strict=True):
        writer = ShardWriter(
            directory / file_name, [(j.name, j.source.dtype, j.shape) for j in group]
        )
        try:
            for job in group:
                _write_one(writer, job)
                weight_map[job.name] = file_name
                bar.update()
        except BaseException:
            writer.close(check=False)
            raise
        writer.close()
    bar.close()
    if len(groups) > 1:
        total = sum(job.nbytes for job in jobs)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (directory / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return len(groups)


def _write_one(writer: ShardWriter, job: _Job) -> None:
    if isinstance(job.source, StackedSource):
        _write_stacked(writer, job)
        return
    if not job.dims:
        writer.copy(job.source)
        return
    later = {d: i for d, i in job.dims.items() if d > 0}
    for slab in read_rows(job.source, job.dims.get(0)):
        writer.write(_select(slab, later))


def _write_stacked(writer: ShardWriter, job: _Job) -> None:
    """A fused expert tensor, one kept expert at a time from its own tensors."""
    source: StackedSource = job.source
    columns = {d - 1: i for d, i in job.dims.items() if d > 1}  # dims of one expert's slab
    for expert in job.dims.get(0, range(source.shape[0])):
        for slab in source.expert_slabs(expert, job.dims.get(1)):
            writer.write(_select(slab, columns))


def _select(slab: torch.Tensor, dims: dict[int, list[int]]) -> torch.Tensor:
    """``slab`` with only the kept indices of each of ``dims``."""
    for dim, indices in sorted(dims.items()):
        slab = slab.index_select(dim, torch.tensor(indices, dtype=torch.long))
    return slab


def _copy_extras(src: Path, out: Path) -> None:
    """Tokenizer and generation config, as they were (the cut does not change them)."""
    for pattern in _COPIED:
        for path in src.glob(pattern):
            if path.is_file():
                shutil.copy2(path, out / path.name)
