"""Union-find over tensor axes, with product and concatenation structure.

An *atom* stands for an index space (a tensor axis, or a piece of one). Atoms
joined by :meth:`AxisAlgebra.unify` share one index space: removing index ``i``
from one removes it from every other. An atom can be refined in two ways:

* into a row-major **product** of smaller atoms, as when a reshape splits a
  384-wide projection into ``6 heads x 64``;
* into a **concatenation** of segments, as when a fused ``qkv`` output is split,
  or RoPE slices the two halves of a head.

Structure is stored on a class's root, so every atom of the class sees it.
Atoms with no structure are *leaves*; facts (why an axis is frozen, which op
reduces over it, ...) are attached to leaf classes and pushed down when a leaf
is refined later. Refinements that cannot be reconciled (a concatenation meeting
a product, sizes that do not divide) raise :class:`AxisConflict`; the caller
freezes the axes involved instead of guessing.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from math import prod

__all__ = ["AxisAlgebra", "AxisConflict", "Fact", "FactKind", "Structure", "StructureKind"]


class AxisConflict(Exception):
    """Two views of an axis cannot be reconciled; the axes involved must be frozen."""


class StructureKind(enum.Enum):
    PRODUCT = "product"
    CONCAT = "concat"


@dataclass(frozen=True)
class Structure:
    kind: StructureKind
    parts: tuple[int, ...]


class FactKind(enum.Enum):
    """What the op rules learn about an axis."""

    PINNED = "pinned"  # an interface axis: model input/output, rows looked up by token id
    POSITION = "position"  # positions: spatial axes, kernel windows, position-table rows
    FROZEN = "frozen"  # an op without a rule, or views that do not align
    HEAD = "head"  # a batch axis of attention (one index per head)
    KV_HEAD = "kv_head"  # head axis of the key/value side
    Q_PER_KV = "q_per_kv"  # head axis broadcast from key/value to queries (GQA)
    HEAD_DIM = "head_dim"  # a per-head feature axis (contracted or carried by attention)
    BROADCAST = "broadcast"  # created by expanding a size-1 axis
    STATISTIC = "statistic"  # a mean/variance is computed over it (pruning != masking)
    SELECT = "select"  # softmax/top-k/max over it: equal to masking only with -inf
    ROUTER = "router"  # the parameter (reason) whose product gives the selected logits
    ALIGN = "align"  # kernels need widths in multiples of ``value`` elements
    SUMMED = "summed"  # summed without a weight: zero-masking proves it only if f(0) = 0
    EXPERT = "expert"  # the expert axis of a fused MoE weight
    EMBEDDING = "embedding"  # the feature axis of an embedding table
    WRITTEN = "written"  # its size is written into a reshape beside a -1 that absorbs any cut
    RESIDUAL = "residual"  # carried past a computation and added back (a skip connection)


class Interface(enum.Enum):
    """Which interface a pinned axis belongs to (the kind of its group)."""

    INPUT = "input"  # an axis of a model input
    OUTPUT = "output"  # an axis of a model output
    VOCABULARY = "vocabulary"  # rows looked up by token ids


@dataclass(frozen=True)
class Fact:
    kind: FactKind
    reason: str
    module: str = ""
    value: int | None = None  # e.g. the k of a top-k
    interface: Interface | None = None  # for PINNED: what it pins


class AxisAlgebra:
    """Atoms, their union-find classes, their structure and their facts."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self._size: list[int] = []
        self._structure: dict[int, Structure] = {}
        self._facts: dict[int, list[Fact]] = {}

    # -- atoms -------------------------------------------------------------------
    def new(self, size: int) -> int:
        atom = len(self._parent)
        self._parent.append(atom)
        self._size.append(int(size))
        return atom

    def size(self, atom: int) -> int:
        return self._size[self.find(atom)]

    def find(self, atom: int) -> int:
        parent = self._parent
        while parent[atom] != atom:
            parent[atom] = parent[parent[atom]]
            atom = parent[atom]
        return atom

    def structure(self, atom: int) -> Structure | None:
        return self._structure.get(self.find(atom))

    def product(self, parts: Sequence[int]) -> int:
        """An atom whose index space is the row-major product of ``parts``."""
        parts = [p for p in parts if self.size(p) != 1]
        if len(parts) == 1:
            return parts[0]
        atom = self.new(prod(self.size(p) for p in parts))
        if parts:
            self._structure[atom] = Structure(StructureKind.PRODUCT, tuple(parts))
        return atom

    def concat(self, parts: Sequence[int]) -> int:
        """An atom whose index space is the concatenation of ``parts``."""
        parts = [p for p in parts if self.size(p) != 0]
        if len(parts) == 1:
            return parts[0]
        atom = self.new(sum(self.size(p) for p in parts))
        self._structure[atom] = Structure(StructureKind.CONCAT, tuple(parts))
        return atom

    # -- expansions --------------------------------------------------------------
    def leaves(self, atom: int) -> list[int]:
        """Roots of the leaf classes under ``atom``, in index order."""
        root = self.find(atom)
        structure = self._structure.get(root)
        if structure is None:
            return [root]
        return [leaf for part in structure.parts for leaf in self.leaves(part)]

    def product_leaves(self, atom: int) -> list[int]:
        """Expand nested products only (concatenations stay whole); size-1 parts dropped."""
        root = self.find(atom)
        structure = self._structure.get(root)
        if structure is None or structure.kind is not StructureKind.PRODUCT:
            return [root] if self._size[root] != 1 else []
        return [leaf for part in structure.parts for leaf in self.product_leaves(part)]

    def concat_parts(self, atom: int) -> list[int]:
        """Expand nested concatenations only (products stay whole)."""
        root = self.find(atom)
        structure = self._structure.get(root)
        if structure is None or structure.kind is not StructureKind.CONCAT:
            return [root]
        return [leaf for part in structure.parts for leaf in self.concat_parts(part)]

    # -- facts -------------------------------------------------------------------
    def add_fact(self, atom: int, fact: Fact) -> None:
        for leaf in self.leaves(atom):
            facts = self._facts.setdefault(leaf, [])
            if fact not in facts:
                facts.append(fact)

    def facts(self, atom: int) -> list[Fact]:
        return [f for leaf in self.leaves(atom) for f in self._facts.get(leaf, ())]

    def has_fact(self, atom: int, kind: FactKind) -> bool:
        return any(f.kind is kind for f in self.facts(atom))

    # -- unification -------------------------------------------------------------
    def unify(self, a: int, b: int) -> None:
        """Make ``a`` and ``b`` one index space, reconciling their structure."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self._size[ra] != self._size[rb]:
            raise AxisConflict(f"axes of size {self._size[ra]} and {self._size[rb]} meet")
        sa, sb = self._structure.get(ra), self._structure.get(rb)
        if sa is not None and sb is not None:
            if sa.kind is StructureKind.PRODUCT and sb.kind is StructureKind.PRODUCT:
                self.unify_products(self.product_leaves(ra), self.product_leaves(rb))
            elif sa.kind is StructureKind.CONCAT and sb.kind is StructureKind.CONCAT:
                self._unify_concats(ra, rb)
            else:
                raise AxisConflict("a concatenated axis is also viewed as a product")
            ra, rb = self.find(ra), self.find(rb)
            if ra == rb:
                return
        self._union(ra, rb)

    def unify_products(self, xs: Iterable[int], ys: Iterable[int]) -> None:
        """Unify two row-major factorisations of one index space, splitting leaves
        where one side is finer than the other."""
        xs = deque(x for x in xs if self.size(x) != 1)
        ys = deque(y for y in ys if self.size(y) != 1)
        while xs and ys:
            x, y = self._next_factor(xs), self._next_factor(ys)
            if x is None or y is None:
                break
            sx, sy = self.size(x), self.size(y)
            if sx == sy:
                self.unify(x, y)
            elif sx > sy:
                hi, lo = self._split(x, sy)
                self.unify(hi, y)
                xs.appendleft(lo)
            else:
                hi, lo = self._split(y, sx)
                self.unify(x, hi)
                ys.appendleft(lo)
        if any(self.size(a) != 1 for a in (*xs, *ys)):
            raise AxisConflict("reshaped axes have different total sizes")

    def _next_factor(self, queue: deque[int]) -> int | None:
        while queue:
            atom = self.find(queue.popleft())
            structure = self._structure.get(atom)
            if structure is not None and structure.kind is StructureKind.PRODUCT:
                queue.extendleft(reversed([p for p in structure.parts if self.size(p) != 1]))
                continue
            if self._size[atom] != 1:
                return atom
        return None

    def _split(self, atom: int, outer: int) -> tuple[int, int]:
        """Refine a leaf into ``outer x (size // outer)``."""
        root = self.find(atom)
        size = self._size[root]
        if size % outer:
            raise AxisConflict(f"an axis of size {size} cannot be split by {outer}")
        if root in self._structure:
            raise AxisConflict(f"a concatenated axis of size {size} is also reshaped")
        hi, lo = self.new(outer), self.new(size // outer)
        self._refine(root, Structure(StructureKind.PRODUCT, (hi, lo)))
        return hi, lo

    def cut(self, atom: int, offsets: Iterable[int]) -> list[int]:
        """Refine ``atom`` so that it has boundaries at ``offsets``; return one
        atom per resulting segment, in order."""
        root = self.find(atom)
        size = self._size[root]
        bounds = [0, *sorted({o for o in offsets if 0 < o < size}), size]
        if len(bounds) == 2:
            return [root]
        structure = self._structure.get(root)
        if structure is None:
            segments = [self.new(end - start) for start, end in pairwise(bounds)]
            self._refine(root, Structure(StructureKind.CONCAT, tuple(segments)))
            return segments
        if structure.kind is StructureKind.PRODUCT:
            first, *rest = structure.parts
            inner = size // self.size(first)
            if any(b % inner for b in bounds):
                raise AxisConflict(f"a slice at {bounds[1:-1]} cuts across a reshaped axis")
            outer = self.cut(first, [b // inner for b in bounds[1:-1]])
            return [self.product([segment, *rest]) for segment in outer]
        return self._cut_concat(root, bounds)

    def _cut_concat(self, root: int, bounds: list[int]) -> list[int]:
        start = 0
        for part in self.concat_parts(root):
            end = start + self.size(part)
            inside = [b - start for b in bounds if start < b < end]
            if inside:
                self.cut(part, inside)
            start = end
        parts, offset = [], 0
        for part in self.concat_parts(root):
            parts.append((offset, part))
            offset += self.size(part)
        return [self.concat([p for o, p in parts if lo <= o < hi]) for lo, hi in pairwise(bounds)]

    def _unify_concats(self, ra: int, rb: int) -> None:
        bounds = set()
        for root in (ra, rb):
            offset = 0
            for part in self.concat_parts(root):
                offset += self.size(part)
                bounds.add(offset)
        segments_a = self.cut(ra, bounds)
        segments_b = self.cut(rb, bounds)
        for x, y in zip(segments_a, segments_b, strict=True):
            self.unify(x, y)

    def _refine(self, root: int, structure: Structure) -> None:
        self._structure[root] = structure
        for fact in self._facts.pop(root, ()):
            self.add_fact(root, fact)

    def _union(self, ra: int, rb: int) -> None:
        """Join two roots whose structures (if both have one) are already unified."""
        if ra not in self._structure and rb in self._structure:
            ra, rb = rb, ra
        self._parent[rb] = ra
        self._structure.pop(rb, None)
        for fact in self._facts.pop(rb, ()):
            self.add_fact(ra, fact)
