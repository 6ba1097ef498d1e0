"""Distributed negative sampling: packages from the global batch, drugs outside the package."""

from __future__ import annotations

import numpy as np
import pytest

from dpr_dist.data.graphs import PairTable, package_edges
from dpr_dist.train.negatives import (
    gather_drug_pool, gather_packages, negative_layout, pack_packages, payload_bytes, sample_negative_drugs,
    sample_negative_packages, unpack_packages)
from dpr_dist.train.packages import PackageSet

M = 30


def random_packages(n: int, seed: int, sizes=(2, 7)) -> PackageSet:
    """``n`` random packages over ``M`` drugs with graphs from a random R and p."""
    rng = np.random.default_rng(seed)
    pkgs = [rng.choice(M, size=int(rng.integers(*sizes)), replace=False) for _ in range(n)]
    keys = np.unique(rng.integers(0, M * M, 200))
    relation = PairTable(M, keys[::3], rng.integers(0, 3, len(keys[::3])).astype(np.int8))
    cooc = PairTable(M, keys, rng.random(len(keys)).astype(np.float32) * 0.2)
    off = np.concatenate([[0], np.cumsum([len(p) for p in pkgs])]).astype(np.int64)
    ids = np.concatenate(pkgs).astype(np.int64)
    e = package_edges(off, ids, relation, cooc, 0.05)
    return PackageSet(off, ids, e.offsets, e.src.astype(np.int64), e.dst.astype(np.int64), e.rel.astype(np.int64),
                      e.p, e.w)


def fake_gather(parts_by_rank: list[PackageSet]):
    """An ``all_gather`` that returns every rank's packed batch (the caller's own included)."""
    packed = [pack_packages(p) for p in parts_by_rank]

    def all_gather(obj):
        return packed
    return all_gather


def test_pack_roundtrip_and_wire_size():
    ps = random_packages(12, seed=1)
    d = pack_packages(ps)
    back = unpack_packages(d)
    for name in ("node_ptr", "drug", "edge_ptr", "src", "dst", "rel", "p", "w"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ps, name), err_msg=name)
    b, n, e = len(ps), len(ps.drug), len(ps.src)
    assert payload_bytes(d) == 8 * (b + 1) + 4 * n + 9 * e


def test_gather_places_ranks_in_order():
    r0, r1 = random_packages(5, seed=2), random_packages(7, seed=3)
    g = gather_packages(r1, rank=1, all_gather=fake_gather([r0, r1]))
    assert len(g.packages) == 12 and g.offsets.tolist() == [0, 5, 12]
    assert g.own().tolist() == list(range(5, 12))
    assert [p.tolist() for p in g.packages.take(g.own()).packages()] == [p.tolist() for p in r1.packages()]
    assert g.bytes_sent > payload_bytes(pack_packages(r1)) and g.bytes_received > 0
    assert g.rank_of(np.array([0, 4, 5, 11])).tolist() == [0, 0, 1, 1]


def test_negatives_never_own_package_and_ratio_per_patient():
    base = random_packages(40, seed=4)
    ps = PackageSet.concat([base, base.take(np.arange(10))])  # packages 40..49 repeat 0..9
    keys = ps.keys()
    own = np.arange(len(ps))
    neg = sample_negative_packages(keys, own, ratio=10, rng=np.random.default_rng(0))
    assert neg.shape == (50, 10) and neg.dtype == np.int64
    assert not (keys[neg] == keys[own][:, None]).any()
    # a copy of the own package under another index is not a negative either
    assert not (neg[:10] == (np.arange(10) + 40)[:, None]).any()
    assert not (neg[40:] == np.arange(10)[:, None]).any()


def test_negatives_come_from_other_ranks():
    """Rank 1's patients get negatives from rank 0's slice of the global batch."""
    r0, r1 = random_packages(16, seed=5), random_packages(16, seed=6)
    g = gather_packages(r1, rank=1, all_gather=fake_gather([r0, r1]))
    neg = sample_negative_packages(g.packages.keys(), g.own(), ratio=8, rng=np.random.default_rng(1))
    outside = (neg < g.offsets[1]) | (neg >= g.offsets[2])
    assert outside.any() and (~outside).any()
    assert 0.3 < outside.mean() < 0.7  # uniform over the global batch: about half from rank 0


def test_same_seed_same_negatives_and_layout():
    ps = random_packages(20, seed=7)
    a = sample_negative_packages(ps.keys(), np.arange(20), 5, np.random.default_rng(3))
    b = sample_negative_packages(ps.keys(), np.arange(20), 5, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    layout = negative_layout(np.arange(20), a)
    assert layout.shape == (120,) and layout[::6].tolist() == list(range(20))
    np.testing.assert_array_equal(layout.reshape(20, 6)[:, 1:], a)


def test_no_negative_available_falls_back_to_own():
    ps = random_packages(1, seed=8)
    same = ps.take(np.zeros(6, np.int64))  # six copies of one package, and one other
    other = random_packages(3, seed=9).take(np.array([0]))
    glob = PackageSet.concat([same, other])
    neg = sample_negative_packages(glob.keys(), np.arange(7), 4, np.random.default_rng(0))
    assert (neg[:6] == 6).all()  # the only different package
    assert set(neg[6].tolist()) <= set(range(6))
    lone = sample_negative_packages(same.keys(), np.arange(6), 3, np.random.default_rng(0))
    assert (lone == np.arange(6)[:, None]).all()  # nothing else exists: own index, zero gradient


def test_ratio_must_be_positive():
    with pytest.raises(ValueError, match="negative_ratio"):
        sample_negative_packages(np.arange(3, dtype=np.uint64), np.arange(3), 0, np.random.default_rng(0))


def test_drug_negatives_outside_package_from_global_pool():
    rng = np.random.default_rng(0)
    pos = np.array([[1, 2, 3], [4, 5, 0], [6, 0, 0]])
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]], bool)
    pool, _ = gather_drug_pool(pos[mask], all_gather=lambda mine: [mine, np.array([10, 11, 12], np.int32)])
    assert pool.tolist() == [1, 2, 3, 4, 5, 6, 10, 11, 12]
    neg = sample_negative_drugs(pos, mask, pool, num_drugs=20, ratio=7, rng=rng)
    assert neg.shape == (3, 3, 7)
    for i in range(3):
        mine = set(pos[i][mask[i]].tolist())
        assert not mine & set(neg[i].ravel().tolist())
        assert set(neg[i].ravel().tolist()) <= set(pool.tolist())
    assert np.isin(neg, [10, 11, 12]).any()  # drugs only another rank's batch holds


def test_drug_negatives_fall_back_to_vocabulary():
    pos = np.array([[0, 1, 2]])
    neg = sample_negative_drugs(pos, np.ones_like(pos, bool), np.array([0, 1, 2]), num_drugs=5, ratio=4,
                                rng=np.random.default_rng(0))
    assert set(neg.ravel().tolist()) <= {3, 4}
    with pytest.raises(ValueError, match="every drug"):
        sample_negative_drugs(pos, np.ones_like(pos, bool), np.array([0, 1, 2]), 3, 2, np.random.default_rng(0))
