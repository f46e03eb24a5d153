"""Reading and writing safetensors files one tensor (or one slab of rows) at a time.

The safetensors format is an 8-byte little-endian header length, a JSON header
``{name: {"dtype", "shape", "data_offsets"}}`` and the raw bytes. The library's
own readers memory-map the whole file, and mapped pages that have been touched
count in a process's resident set, so a pass over a 6 GB shard would show up as
6 GB of RSS. Here every read is plain file I/O into a fresh buffer at the
offsets the header gives, and a writer computes its header up front from the
known output shapes and then appends the bytes tensor by tensor: at most one
slab is in memory.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import BinaryIO

import torch

from surgeon.errors import SurgeonError

__all__ = [
    "DTYPES",
    "ShardWriter",
    "TensorEntry",
    "open_checkpoint",
    "read_header",
    "read_rows",
    "read_tensor",
]

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
CHUNK_BYTES = 64 * 2**20  # the most one read or copy holds in memory
_MAX_HEADER = 100 * 2**20


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in a safetensors file."""

    name: str
    file: Path
    dtype: str  # the safetensors name: "BF16", "F32"...
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    nbytes: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def row_bytes(self) -> int:
        """Bytes of one index of dim 0 (the whole tensor for a scalar)."""
        return self.nbytes // self.shape[0] if self.shape and self.shape[0] else self.nbytes


def read_header(path: Path) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """The tensors of one file (in file order) and its ``__metadata__``."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SurgeonError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (size,) = struct.unpack("<Q", raw)
        if size > _MAX_HEADER:
            raise SurgeonError(f"{path}: not a safetensors file (header of {size} bytes)")
        try:
            header = json.loads(f.read(size))
        except ValueError as error:
            raise SurgeonError(f"{path}: unreadable safetensors header ({error})") from error
    metadata = header.pop("__metadata__", None) or {}
    entries = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        if info["dtype"] not in DTYPES:
            raise SurgeonError(f"{path}: tensor '{name}' has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end - begin != prod(shape) * DTYPES[info["dtype"]].itemsize:
            raise SurgeonError(f"{path}: tensor '{name}' has {end - begin} bytes for {shape}")
        entries[name] = TensorEntry(name, path, info["dtype"], shape, 8 + size + begin, end - begin)
    return entries, metadata


def _read(f: BinaryIO, entry: TensorEntry, offset: int, nbytes: int) -> bytearray:
    buffer = bytearray(nbytes)
    f.seek(entry.start + offset)
    if f.readinto(buffer) != nbytes:
        raise SurgeonError(f"{entry.file}: tensor '{entry.name}' is truncated")
    return buffer


def _as_tensor(buffer: bytearray, entry: TensorEntry, shape: Sequence[int]) -> torch.Tensor:
    if not buffer:
        return torch.empty(tuple(shape), dtype=entry.torch_dtype)
    return torch.frombuffer(buffer, dtype=entry.torch_dtype).reshape(tuple(shape))


def read_tensor(entry: TensorEntry) -> torch.Tensor:
    """The whole tensor, read with plain file I/O (no mapping)."""
    with open(entry.file, "rb") as f:
        return _as_tensor(_read(f, entry, 0, entry.nbytes), entry, entry.shape)


def read_rows(entry: TensorEntry, rows: Sequence[int] | None = None) -> Iterator[torch.Tensor]:
    """Slabs ``tensor[rows]`` in order, each at most ~``CHUNK_BYTES``: runs of
    consecutive rows are read in one piece, so a kept range costs one read.
    ``rows=None`` means all rows; a scalar comes back whole."""
    if not entry.shape:
        yield read_tensor(entry)
        return
    rows = range(entry.shape[0]) if rows is None else rows
    per_read = max(1, CHUNK_BYTES // max(entry.row_bytes, 1))
    with open(entry.file, "rb") as f:
        for first, count in _runs(rows, per_read):
            buffer = _read(f, entry, first * entry.row_bytes, count * entry.row_bytes)
            yield _as_tensor(buffer, entry, (count, *entry.shape[1:]))


def _runs(rows: Sequence[int], limit: int) -> Iterator[tuple[int, int]]:
    """(first row, count) of maximal runs of consecutive rows, at most ``limit`` long."""
    first, count = None, 0
    for row in rows:
        if first is not None and row == first + count and count < limit:
            count += 1
            continue
        if first is not None:
            yield first, count
        first, count = row, 1
    if first is not None:
        yield first, count


class ShardWriter:
    """Writes one safetensors file whose tensors are announced up front.

    ``tensors`` is ``[(name, dtype name, shape)]`` in the order their bytes will
    come; :meth:`write` appends bytes (a tensor may come in several slabs) and
    :meth:`close` checks that exactly the announced bytes arrived."""

    def __init__(
        self,
        path: Path,
        tensors: Sequence[tuple[str, str, Sequence[int]]],
        metadata: dict[str, str] | None = None,
    ) -> None:
        header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
        offset = 0
        for name, dtype, shape in tensors:
            nbytes = prod(shape) * DTYPES[dtype].itemsize
            header[name] = {
                "dtype": dtype,
                "shape": list(shape),
                "data_offsets": [offset, offset + nbytes],
            }
            offset += nbytes
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # data starts 8-byte aligned, as safetensors writes it
        self.path, self.expected, self.written = path, offset, 0
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._file.write(struct.pack("<Q", len(text)) + text)

    def write(self, tensor: torch.Tensor) -> None:
        data = tensor.contiguous().reshape(-1).view(torch.uint8).numpy()
        self._file.write(data)
        self.written += data.nbytes

    def copy(self, entry: TensorEntry) -> None:
        """Append an uncut tensor straight from its file, in bounded chunks."""
        with open(entry.file, "rb") as f:
            f.seek(entry.start)
            left = entry.nbytes
            while left:
                chunk = f.read(min(left, CHUNK_BYTES))
                if not chunk:
                    raise SurgeonError(f"{entry.file}: tensor '{entry.name}' is truncated")
                self._file.write(chunk)
                left -= len(chunk)
        self.written += entry.nbytes

    def close(self, check: bool = True) -> None:
        """Close the file; with ``check``, fail unless every announced byte came."""
        self._file.close()
        if check and self.written != self.expected:
            raise SurgeonError(
                f"{self.path}: wrote {self.written} bytes of tensor data, expected {self.expected}"
            )


def open_checkpoint(directory: Path) -> dict[str, TensorEntry]:
    """Every tensor of a Hugging Face safetensors checkpoint (``model.safetensors``
    or the shards named by ``model.safetensors.index.json``), shard by shard in
    file order."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict):
            raise SurgeonError(f"{index}: no weight_map")
        files = list(dict.fromkeys(weight_map.values()))
    elif (directory / "model.safetensors").is_file():
        weight_map, files = None, ["model.safetensors"]
    else:
        raise SurgeonError(
            f"no model.safetensors or model.safetensors.index.json in '{directory}': "
            "streaming surgery reads safetensors checkpoints only"
        )
    entries: dict[str, TensorEntry] = {}
    for file in files:
        path = directory / file
        if not path.is_file():
            raise SurgeonError(f"the checkpoint index names {file}, which is not in '{directory}'")
        for name, entry in read_header(path)[0].items():
            if name in entries:
                raise SurgeonError(f"tensor '{name}' is in both {entries[name].file} and {path}")
            entries[name] = entry
    if weight_map is not None:
        unlisted = sorted(set(weight_map) - set(entries))
        if unlisted:
            raise SurgeonError(f"{index} lists tensors no shard holds: {', '.join(unlisted[:5])}")
    return entries
