"""Checkpoint tensors under other names than the model's: transformers' load-time conversions.

Transformers 5 holds MoE experts fused (``mlp.experts.gate_up_proj`` of shape
``[experts, 2 x width, hidden]``) but reads and writes checkpoints with one
tensor per expert (``block_sparse_moe.experts.3.w1.weight``), converting at
load time by the rules of ``transformers.conversion_mapping``. Streaming
surgery reads the checkpoint itself, so it follows the same rules: renamings
are applied to the checkpoint's names, and a fused model tensor becomes a
:class:`StackedSource` that reads its experts' tensors one at a time.

Only the conversions structured cuts can follow are supported: stacking along
dim 0 (``MergeModulelist(dim=0)``), then optionally concatenating along dim 1
(``Concatenate(dim=1)``). Anything else is refused with the rule named.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from surgeon.analyzers.names import ParameterNames
from surgeon.checkpoint.shards import TensorEntry, read_rows, read_tensor
from surgeon.errors import SurgeonError

__all__ = ["Source", "StackedSource", "checkpoint_sources"]


@dataclass(frozen=True)
class StackedSource:
    """A model tensor made of per-expert checkpoint tensors: ``pieces[e][j]`` is
    expert ``e``'s ``j``-th tensor; experts stack along dim 0, an expert's pieces
    concatenate along dim 0 of theirs (dim 1 of the model tensor)."""

    name: str
    pieces: tuple[tuple[TensorEntry, ...], ...]

    @property
    def shape(self) -> tuple[int, ...]:
        first = self.pieces[0]
        return (len(self.pieces), sum(p.shape[0] for p in first), *first[0].shape[1:])

    @property
    def dtype(self) -> str:
        return self.pieces[0][0].dtype

    @property
    def torch_dtype(self) -> torch.dtype:
        return self.pieces[0][0].torch_dtype

    @property
    def file(self) -> Path:
        return self.pieces[0][0].file

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for expert in self.pieces for p in expert)

    def read(self) -> torch.Tensor:
        """The whole model tensor (for scoring, as a fused checkpoint would be read)."""
        return torch.stack([torch.cat([read_tensor(p) for p in expert]) for expert in self.pieces])

    def expert_slabs(self, expert: int, rows: Sequence[int] | None) -> Iterator[torch.Tensor]:
        """``tensor[expert, rows]`` in order, in slabs read piece by piece."""
        offset = 0
        for piece in self.pieces[expert]:
            size = piece.shape[0]
            inside = (
                range(size)
                if rows is None
                else [r - offset for r in rows if 0 <= r - offset < size]
            )
            if inside:
                yield from read_rows(piece, inside)
            offset += size


Source = TensorEntry | StackedSource  # where one model tensor's data lies


def checkpoint_sources(
    model: nn.Module, entries: dict[str, TensorEntry], src: Path
) -> dict[str, Source]:
    """Model tensor name (each non-tied name) -> its :class:`TensorEntry` or
    :class:`StackedSource`; refuses a checkpoint that does not hold exactly the
    model's tensors under its names or transformers' conversions of them."""
    names = ParameterNames(model)
    expected = [n for n in model.state_dict() if n not in names.tied]
    sources: dict[str, Source] = {}
    for name in expected:
        stored = next((a for a in (name, *names.aliases.get(name, ())) if a in entries), None)
        if stored is not None:
            sources[name] = entries[stored]
    if len(sources) < len(expected):
        taken = {s.name for s in sources.values()}
        converted = _converted(model, {k: e for k, e in entries.items() if k not in taken})
        sources.update({n: s for n, s in converted.items() if n in expected and n not in sources})
    used = {entry.name for source in sources.values() for entry in _entries_of(source)}
    missing = [n for n in expected if n not in sources]
    unknown = sorted(set(entries) - used - set(names.tied))
    if unknown or missing:
        found = f"tensors {unknown[:4]} that the model has not" if unknown else ""
        lacks = f"no tensors {missing[:4]}" if missing else ""
        raise SurgeonError(
            f"the checkpoint in '{src}' holds {' and '.join(x for x in (found, lacks) if x)} "
            f"(the model {type(model).__name__} that config.json builds, with transformers' "
            "load-time renamings and expert stacking applied)"
        )
    return sources


def _converted(model: nn.Module, entries: dict[str, TensorEntry]) -> dict[str, Source]:
    """Sources of the tensors transformers' conversion rules build from ``entries``,
    by the names they get (the caller keeps those the model has)."""
    rules = _rules(model)
    converters = [r for r in rules if type(r).__name__ == "WeightConverter"]
    stacks: dict[str, dict[int, dict[int, TensorEntry]]] = {}
    counts: dict[str, int] = {}
    sources: dict[str, Source] = {}
    for key, entry in entries.items():
        key = _rename(key, rules)
        hit = next(((c, h) for c in converters if (h := _match(key, c)) is not None), None)
        if hit is None:
            sources[key] = entry
            continue
        converter, (target, expert, index) = hit
        stacks.setdefault(target, {}).setdefault(expert, {})[index] = entry
        counts[target] = len(converter.source_patterns)
    for target, experts in stacks.items():
        if sorted(experts) != list(range(len(experts))) or any(
            sorted(pieces) != list(range(counts[target])) for pieces in experts.values()
        ):
            raise SurgeonError(f"the checkpoint's per-expert tensors of '{target}' are incomplete")
        pieces = tuple(tuple(experts[e][j] for j in range(counts[target])) for e in sorted(experts))
        sources[target] = StackedSource(target, pieces)
    return sources


def _entries_of(source: Source) -> tuple[TensorEntry, ...]:
    if isinstance(source, StackedSource):
        return tuple(entry for expert in source.pieces for entry in expert)
    return (source,)


def _rules(model: nn.Module) -> list:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    except ImportError:  # transformers 4: checkpoints are read as they are named
        return []
    rules = list(get_checkpoint_conversion_mapping(model_type) or []) if model_type else []
    for rule in rules:
        if type(rule).__name__ == "WeightConverter":
            ops = [(type(op).__name__, getattr(op, "dim", None)) for op in rule.operations]
            if ops not in ([("MergeModulelist", 0)], [("MergeModulelist", 0), ("Concatenate", 1)]):
                raise SurgeonError(
                    f"transformers converts {rule.source_patterns} to {rule.target_patterns} "
                    f"with {ops}; streaming follows only stacking along dim 0 and "
                    "concatenating along dim 1: load, apply and save in memory instead"
                )
    return rules


def _rename(key: str, rules: list) -> str:
    for rule in rules:
        if type(rule).__name__ != "WeightRenaming":
            continue
        for source, target in zip(rule.source_patterns, rule.target_patterns, strict=False):
            key = re.sub(source, target, key)
    return key


def _match(key: str, converter) -> tuple[str, int, int] | None:
    """(model tensor name, expert, piece index) when ``key`` is one of
    ``converter``'s per-expert sources."""
    for index, pattern in enumerate(converter.source_patterns):
        regex = re.escape(pattern).replace(r"\*", r"(\d+)") + "$"
        found = re.search(regex, key)
        if found:
            return key[: found.start()] + converter.target_patterns[0], int(found.group(1)), index
    return None
