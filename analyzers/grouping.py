"""From coupled axes to groups.

Every parameter dimension expands into leaf axis classes. Classes that are
factors of one product (KV heads and queries per KV head in ``q_proj``'s rows)
are pruned together, so groups are the connected components of that graph.
Classes that are only concatenated (two conv branches feeding one ``cat``) stay
independent groups. A head's feature axis (``head_dim``) is structure
inside an attention group, not a unit of its own, and does not connect groups
(RoPE shares it across all layers through one rotary buffer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import networkx as nx

from .axes import AxisAlgebra, Fact, FactKind, Interface, StructureKind
from .even_splits import freeze_uneven_splits
from .group_notes import notes_of, only_selected, summarise
from .groups import Block, Group, GroupKind, Layout, Level, Member
from .propagate import Coupling

__all__ = ["form_groups"]


@dataclass(frozen=True)
class _Dim:
    param: str
    dim: int
    atom: int
    leaves: tuple[int, ...]


def form_groups(
    coupling: Coupling,
    blocks: Sequence[Block],
    aliases: dict[str, tuple[str, ...]],
    order: dict[str, int],
) -> list[Group]:
    """Groups in model order (by their first parameter)."""
    return _GroupBuilder(coupling, blocks, aliases, order).build()


class _GroupBuilder:
    def __init__(self, coupling: Coupling, blocks: Sequence[Block], aliases, order) -> None:
        self.coupling = coupling
        self.algebra: AxisAlgebra = coupling.algebra
        self.blocks = blocks
        self.aliases = aliases
        self._facts: dict[int, list[Fact]] = {}
        self.dims = [
            _Dim(param, d, atom, tuple(self.algebra.leaves(atom)))
            for param, axes in coupling.params.items()
            for d, atom in enumerate(axes)
            if self.algebra.size(atom) > 1
        ]
        self.order = order
        self._touching: dict[int, set[str]] | None = None

    # -- facts ---------------------------------------------------------------------
    def facts(self, leaf: int) -> list[Fact]:
        if leaf not in self._facts:
            self._facts[leaf] = self.algebra.facts(leaf)
        return self._facts[leaf]

    def has(self, leaf: int, kind: FactKind) -> bool:
        return any(f.kind is kind for f in self.facts(leaf))

    # -- components ----------------------------------------------------------------
    def build(self) -> list[Group]:
        heads = {leaf for d in self.dims for leaf in d.leaves if self.has(leaf, FactKind.HEAD)}
        beside_heads = {leaf for d in self.dims if heads & set(d.leaves) for leaf in d.leaves}
        self.structural = {
            leaf for leaf in beside_heads if self.has(leaf, FactKind.HEAD_DIM) and leaf not in heads
        }
        for d in self.dims:  # per-head features the attention never saw (MLA's rotary part)
            self.structural |= self._inside_heads(d.atom, heads)
        self._freeze_uneven_splits()
        graph = nx.Graph()
        for d in self.dims:
            graph.add_nodes_from(leaf for leaf in d.leaves if self._is_unit(leaf))
            for factors in self._products(d.atom):
                graph.add_edges_from(pairwise(factors))
        groups = [
            self._group(component)
            for component in nx.connected_components(graph)
            if self._has_parameter(component)
        ]
        groups.sort(key=lambda g: min((self.order.get(m.param, 0), m.dim) for m in g.members))
        return _unique_ids(groups)

    def _inside_heads(self, atom: int, heads: set[int]) -> set[int]:
        """Leaves inside a head: later factors of a product whose earlier factor
        is a head axis. MLA's query rows are ``heads x [nope | rope]``; its
        rotary part reaches attention only through fresh axes (an interleaving
        slice), so no HEAD_DIM fact marks it, yet it is a per-head feature."""
        structure = self.algebra.structure(atom)
        if structure is None:
            return set()
        found = set().union(*(self._inside_heads(part, heads) for part in structure.parts))
        if structure.kind is StructureKind.PRODUCT:
            for i, part in enumerate(structure.parts):
                if heads & set(self.algebra.leaves(part)):
                    for later in structure.parts[i + 1 :]:
                        found |= set(self.algebra.leaves(later)) - heads
        return found

    def _freeze_uneven_splits(self) -> None:
        """Pieces of a ``chunk``/``split(int)`` that could lose different units
        would be re-split at the wrong boundary: freeze them."""
        for leaf in freeze_uneven_splits(self.algebra, self.coupling.even_splits, self._is_unit):
            self._facts.pop(leaf, None)

    def _has_parameter(self, component: set[int]) -> bool:
        """Buffers (running statistics) join groups; alone (a position-id table) they
        are nothing to prune."""
        return any(
            component & set(d.leaves) and d.param not in self.coupling.buffers for d in self.dims
        )

    def _products(self, atom: int) -> list[list[int]]:
        """For every product node under ``atom``, the unit leaves beneath it."""
        structure = self.algebra.structure(atom)
        if structure is None:
            return []
        found = [f for part in structure.parts for f in self._products(part)]
        if structure.kind is StructureKind.PRODUCT:
            leaves = [
                leaf for leaf in dict.fromkeys(self.algebra.leaves(atom)) if self._is_unit(leaf)
            ]
            found.append(leaves)
        return found

    def _is_unit(self, leaf: int) -> bool:
        """Positions (spatial axes, kernel windows, position-table rows) are not
        units anything could be pruned by, so they form no group."""
        return (
            leaf not in self.structural
            and self.algebra.size(leaf) > 1
            and not self.has(leaf, FactKind.POSITION)
        )

    def _group(self, component: set[int]) -> Group:
        dims = [d for d in self.dims if component & set(d.leaves)]
        kind = self._kind(component, dims)
        levels = self._levels(component, dims, kind)
        names = {leaf: level.name for leaf, level in levels}
        members = tuple(
            Member(
                param=d.param,
                dim=d.dim,
                layout=self._layout(d.atom, names),
                module=d.param.rpartition(".")[0],
                shape=self.coupling.shapes[d.param],
                aliases=self.aliases.get(d.param, ()),
                buffer=d.param in self.coupling.buffers,
            )
            for d in dims
        )
        facts = [f for leaf in component for f in self.facts(leaf)]
        statistics = [f for f in facts if f.kind is FactKind.STATISTIC]
        selects = [f for f in facts if f.kind is FactKind.SELECT]
        summed = [f for f in facts if f.kind is FactKind.SUMMED]
        routed = any(f.kind is FactKind.ROUTER for f in facts)
        unprovable = summed + ([] if routed else selects)
        group_levels = tuple(level for _, level in levels)
        size = 1
        for level in group_levels:
            size *= level.size
        prefix = "" if kind == GroupKind.HIDDEN else _common_prefix(m.module for m in members)
        return Group(
            id=f"{kind.value}@{prefix}".rstrip("@"),
            kind=kind,
            levels=group_levels,
            members=members,
            frozen=self._frozen_reason(facts) or only_selected(kind, members, selects, routed),
            mask_equivalent=not statistics and not unprovable,
            notes=tuple(notes_of(statistics, selects, summed, routed)),
            min_units=max([f.value for f in selects if f.value] or [1]),
            head_dim=self._head_dim(members, size) if kind == GroupKind.ATTENTION else None,
            blocks=tuple(self._blocks_of(members)),
            routers=tuple(
                dict.fromkeys(self.canonical(f.reason) for f in facts if f.kind is FactKind.ROUTER)
            ),
            multiple_of=max([f.value for f in facts if f.kind is FactKind.ALIGN] or [1]),
            whole_levels=self._whole_levels(levels) if kind != GroupKind.ATTENTION else (),
            touching=tuple(sorted(set().union(*(self._modules_of(leaf) for leaf in component)))),
        )

    def _modules_of(self, leaf: int) -> set[str]:
        if self._touching is None:
            self._touching = {}
            for module, axes in self.coupling.touches:
                for atom in axes:
                    for found in self.algebra.leaves(atom):
                        self._touching.setdefault(found, set()).add(module)
        return self._touching.get(leaf, set())

    def _whole_levels(self, levels) -> tuple[tuple[str, str], ...]:
        """(level, why) for levels whose size is written into the code beside a -1.
        Not for attention: its head counts are read from attributes (``num_heads``,
        Falcon's ``num_heads // num_kv_heads + 2``) that apply updates."""
        found = []
        for leaf, level in levels:
            reasons = [f.reason for f in self.facts(leaf) if f.kind is FactKind.WRITTEN]
            if reasons:
                found.append((level.name, summarise(reasons)))
        return tuple(found)

    # -- what the group is ---------------------------------------------------------
    def _kind(self, component: set[int], dims: list[_Dim]) -> GroupKind:
        kinds = {f.kind for leaf in component for f in self.facts(leaf)}
        pins = {
            f.interface for leaf in component for f in self.facts(leaf) if f.kind is FactKind.PINNED
        }
        if FactKind.EXPERT in kinds or any(
            d.dim == 0 and self._is_expert_weight(d.param) for d in dims
        ):
            return GroupKind.EXPERTS
        if FactKind.HEAD in kinds:
            return GroupKind.ATTENTION
        if FactKind.EMBEDDING in kinds or (
            FactKind.RESIDUAL in kinds and len(self._blocks_of(dims)) > 1
        ):
            return GroupKind.HIDDEN  # a residual stream through several blocks
        if any(self._is_expert_weight(d.param) for d in dims):
            return GroupKind.EXPERT_MLP
        if Interface.VOCABULARY in pins:
            return GroupKind.VOCAB
        if Interface.INPUT in pins:
            return GroupKind.INPUT
        if pins:
            return GroupKind.OUTPUT
        if any(len(self.coupling.shapes[d.param]) > 2 for d in dims) and not self._stacked(dims):
            return GroupKind.CHANNELS
        return GroupKind.MLP

    def _stacked(self, dims: list[_Dim]) -> bool:
        """A batched MLP: every member a whole axis of a 3-D matrix stack, one of
        them its last (Inkling's shared experts, multiplied in one bmm). A
        convolution's last axis is its kernel, never a channel; a (1, 1, n)
        vector (Falcon-H1's mup_vector) or a fused split (Zamba's per-head
        x_proj) makes the group a mixer's channels."""
        shapes = self.coupling.shapes
        whole_stacks = all(
            len(shapes[d.param]) == 3 and shapes[d.param][1] > 1 and len(d.leaves) == 1
            for d in dims
        )
        return whole_stacks and any(d.dim == 2 for d in dims)

    def canonical(self, param: str) -> str:
        for name, aliases in self.aliases.items():
            if param in aliases:
                return name
        return param

    def _is_expert_weight(self, param: str) -> bool:
        """A stack of expert matrices: its leading axis is the expert axis of a
        fused MoE product, or the axis a router's top-k selects from (Llama 4's
        experts multiply every expert's matrix in one bmm)."""
        axes = self.coupling.params[param]
        if len(axes) != 3:
            return False
        facts = self.algebra.facts(axes[0])
        return any(
            f.kind is FactKind.EXPERT or (f.kind is FactKind.SELECT and f.reason.startswith("top-"))
            for f in facts
        )

    def _levels(self, component: set[int], dims: list[_Dim], kind: GroupKind):
        ordered = list(dict.fromkeys(leaf for d in dims for leaf in d.leaves if leaf in component))
        if kind == GroupKind.ATTENTION:
            kv = [leaf for leaf in ordered if self.has(leaf, FactKind.KV_HEAD)]
            q = [leaf for leaf in ordered if self.has(leaf, FactKind.Q_PER_KV)]
            if (
                len(kv) <= 1
                and len(q) <= 1
                and not set(kv) & set(q)
                and len(kv + q) == len(ordered)
            ):
                return [
                    (leaf, Level(name, self.algebra.size(leaf)))
                    for name, leaf in (*(("kv", leaf) for leaf in kv), *(("q", leaf) for leaf in q))
                ]
        if len(ordered) == 1:
            return [(ordered[0], Level("unit", self.algebra.size(ordered[0])))]
        return [(leaf, Level(f"u{i}", self.algebra.size(leaf))) for i, leaf in enumerate(ordered)]

    def _layout(self, atom: int, names: dict[int, str]) -> Layout:
        root = self.algebra.find(atom)
        size = self.algebra.size(root)
        structure = self.algebra.structure(root)
        if structure is None:
            if root in names:
                return Layout("unit", size, level=names[root])
            return Layout("fixed", size)
        concat = structure.kind is StructureKind.CONCAT
        parts = [  # size-1 factors are no-ops, size-1 segments still take an offset
            self._layout(p, names) for p in structure.parts if concat or self.algebra.size(p) != 1
        ]
        if all(p.kind == "fixed" for p in parts):
            return Layout("fixed", size)
        if len(parts) == 1:
            return parts[0]
        kind = "product" if structure.kind is StructureKind.PRODUCT else "concat"
        flat = [q for p in parts for q in (p.parts if p.kind == kind else (p,))]
        return Layout(kind, size, parts=tuple(flat))

    def _frozen_reason(self, facts: list[Fact]) -> str | None:
        reasons = [f.reason for f in facts if f.kind in (FactKind.FROZEN, FactKind.PINNED)]
        return summarise(reasons) if reasons else None

    def _head_dim(self, members: Iterable[Member], units: int) -> int | None:
        """Width of one head: the smallest product layout over all head levels
        (``o_proj``'s columns) divided by the number of heads."""
        members = list(members)
        levels = set().union(*(m.layout.levels() for m in members))
        sizes = [
            m.layout.size
            for m in members
            if m.layout.kind == "product" and m.layout.levels() == levels
        ]
        return min(sizes) // units if sizes else None

    def _blocks_of(self, items) -> list[str]:
        found = []
        for block in self.blocks:
            prefix = block.name + "."
            if any(i.param.startswith(prefix) for i in items):
                found.append(block.name)
        return found


def _common_prefix(paths: Iterable[str]) -> str:
    split = [p.split(".") if p else [] for p in paths]
    if not split:
        return ""
    prefix = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) != 1:
            break
        prefix.append(parts[0])
    return ".".join(prefix)


def _unique_ids(groups: list[Group]) -> list[Group]:
    from dataclasses import replace

    seen: dict[str, int] = {}
    out = []
    for group in groups:
        count = seen.get(group.id, 0) + 1
        seen[group.id] = count
        out.append(group if count == 1 else replace(group, id=f"{group.id}#{count}"))
    return out
