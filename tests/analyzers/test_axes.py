"""The axis algebra on its own."""

from __future__ import annotations

import pytest

from surgeon.analyzers.axes import AxisAlgebra, AxisConflict, Fact, FactKind, StructureKind


def test_unified_atoms_share_one_class_and_size():
    algebra = AxisAlgebra()
    a, b, c = algebra.new(6), algebra.new(6), algebra.new(6)
    algebra.unify(a, b)
    algebra.unify(b, c)
    assert algebra.find(a) == algebra.find(c)
    assert algebra.size(c) == 6


def test_atoms_of_different_sizes_refuse_to_unify():
    algebra = AxisAlgebra()
    with pytest.raises(AxisConflict, match="size 4 and 6"):
        algebra.unify(algebra.new(4), algebra.new(6))


def test_a_reshape_split_is_seen_by_every_atom_of_the_class():
    algebra = AxisAlgebra()
    projection, alias = algebra.new(384), algebra.new(384)
    algebra.unify(projection, alias)
    heads, head_dim = algebra.new(6), algebra.new(64)
    algebra.unify_products([alias], [heads, head_dim])
    assert algebra.leaves(projection) == [algebra.find(heads), algebra.find(head_dim)]
    assert algebra.structure(projection).kind is StructureKind.PRODUCT


def test_factorisations_of_different_granularity_are_refined_to_a_common_one():
    algebra = AxisAlgebra()
    x = algebra.new(24)
    algebra.unify_products([x], [algebra.new(6), algebra.new(4)])
    kv, q, rest = algebra.new(2), algebra.new(3), algebra.new(4)
    algebra.unify_products([x], [kv, q, rest])
    assert [algebra.size(leaf) for leaf in algebra.leaves(x)] == [2, 3, 4]
    assert algebra.leaves(x)[0] == algebra.find(kv)


def test_misaligned_factorisations_conflict():
    algebra = AxisAlgebra()
    x = algebra.new(384)
    algebra.unify_products([x], [algebra.new(6), algebra.new(64)])
    with pytest.raises(AxisConflict):
        algebra.unify_products([x], [algebra.new(4), algebra.new(96)])


def test_cut_returns_segments_and_reuses_existing_boundaries():
    algebra = AxisAlgebra()
    x = algebra.new(64)
    first, second = algebra.cut(x, [32])
    assert (algebra.size(first), algebra.size(second)) == (32, 32)
    quarter, rest = algebra.cut(x, [16])
    assert algebra.size(quarter) == 16 and algebra.size(rest) == 48
    assert [algebra.size(p) for p in algebra.concat_parts(x)] == [16, 16, 32]


def test_rotate_half_couples_the_two_halves_of_a_head():
    algebra = AxisAlgebra()
    head_dim = algebra.new(64)
    low, high = algebra.cut(head_dim, [32])
    rotated = algebra.concat([high, low])
    algebra.unify(head_dim, rotated)
    assert algebra.find(low) == algebra.find(high)


def test_cutting_a_product_cuts_its_outer_factor():
    algebra = AxisAlgebra()
    fused = algebra.new(3 * 4 * 8)
    algebra.unify_products([fused], [algebra.new(3), algebra.new(4), algebra.new(8)])
    q, k, v = algebra.cut(fused, [32, 64])
    assert [algebra.size(s) for s in (q, k, v)] == [32, 32, 32]
    assert algebra.leaves(q)[1:] == algebra.leaves(k)[1:]  # same heads, same head_dim
    with pytest.raises(AxisConflict, match="cuts across"):
        algebra.cut(fused, [5])


def test_facts_move_to_the_leaves_when_an_atom_is_refined_later():
    algebra = AxisAlgebra()
    x = algebra.new(8)
    algebra.add_fact(x, Fact(FactKind.STATISTIC, "normalised"))
    hi, lo = algebra.new(2), algebra.new(4)
    algebra.unify_products([x], [hi, lo])
    assert algebra.has_fact(hi, FactKind.STATISTIC) and algebra.has_fact(lo, FactKind.STATISTIC)


def test_a_concatenation_cannot_also_be_reshaped():
    algebra = AxisAlgebra()
    x = algebra.new(8)
    algebra.cut(x, [3])
    with pytest.raises(AxisConflict):
        algebra.unify_products([x], [algebra.new(2), algebra.new(4)])
