import numpy as np
import pytest

from netsculpt.graph.layout import Atoms, Incompatible, Prod


def test_unify_splits_atoms_at_the_finer_boundary():
    a = Atoms()
    x, y, z = a.new(6), a.new(4), a.new(2)
    a.unify((x,), (y, z))
    lx = a.expand((x,))
    assert [a.size[s] for s in lx] == [4, 2]
    assert a.find(lx[0]) == a.find(y) and a.find(lx[1]) == a.find(z)


def test_factor_makes_heads_and_index_maps_follow():
    a = Atoms()
    c = a.new(12)
    outer, inner = a.factor((c,), 4)  # 12 channels = 3 heads x 4
    assert a.layout_size(outer) == 3 and a.layout_size(inner) == 4
    head = outer[0]
    assert list(a.index_map((c,), head)) == [0] * 4 + [1] * 4 + [2] * 4
    d = a.leaves(inner)[0]
    assert list(a.index_map((c,), d)) == [0, 1, 2, 3] * 3


def test_atom_against_product_and_product_against_product():
    a = Atoms()
    h, d = a.new(2), a.new(3)
    p = (Prod(h, (d,)),)
    x = a.new(6)
    a.unify((x,), p)
    assert list(a.index_map((x,), a.find(h))) == [0, 0, 0, 1, 1, 1]
    h2, d2 = a.new(2), a.new(3)
    a.unify(p, (Prod(h2, (d2,)),))
    assert a.find(h2) == a.find(h) and a.find(d2) == a.find(d)


def test_cut_inside_a_product_block_is_incompatible():
    a = Atoms()
    h, d = a.new(2), a.new(4)
    with pytest.raises(Incompatible):
        a.unify((a.new(3), a.new(5)), (Prod(h, (d,)),))


def test_protection_survives_refinement_and_union():
    a = Atoms()
    x, y = a.new(4), a.new(4)
    a.protect((x,), "model input")
    x1, _ = a.split(x, 2)
    assert a.protected.get(a.find(x1)) == "model input"
    a.unify((x,), (y,))
    assert all(a.protected.get(c) for c in a.leaves((y,)))


def test_product_layout_index_map_with_concat():
    a = Atoms()
    u, v = a.new(2), a.new(3)
    lay = a.product((u,), (v,)) + (v,)
    m = a.index_map(lay, a.find(v))
    assert np.array_equal(m, [0, 1, 2, 0, 1, 2, 0, 1, 2])
