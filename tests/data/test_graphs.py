import itertools

import numpy as np
import pytest

from dpr_dist.data.graphs import (
    PairTable, cooccurrence_table, filter_edges, merge_counts, package_edges, pair_counts, relation_table)


def _random_packages(rng, n, m, lo=2, hi=7):
    pk = [rng.choice(m, size=rng.integers(lo, hi), replace=False) for _ in range(n)]
    off = np.concatenate([[0], np.cumsum([len(p) for p in pk])])
    return pk, off, np.concatenate(pk)


def test_cooccurrence_equals_brute_force():
    rng = np.random.default_rng(0)
    m = 15
    pk, off, ids = _random_packages(rng, 60, m)
    # two "blocks" merged like the distributed aggregation
    half = 30
    a = pair_counts(off[: half + 1], ids[: off[half]], m)
    b = pair_counts(off[half:] - off[half], ids[off[half]:], m)
    item, keys, counts = merge_counts([a, b], m)
    num = np.zeros(m)
    num_ij = np.zeros((m, m))
    for p in pk:
        for i in p:
            num[i] += 1
        for i, j in itertools.permutations(p, 2):
            num_ij[i, j] += 1
    np.testing.assert_array_equal(item, num)
    dense = np.zeros((m, m))
    dense.reshape(-1)[keys] = counts
    np.testing.assert_array_equal(dense, num_ij)
    p = cooccurrence_table(item, keys, counts, m).dense()
    expect = np.divide(num_ij, num[:, None], out=np.zeros_like(num_ij), where=num[:, None] > 0)
    np.testing.assert_allclose(p, expect, rtol=1e-6)


def test_edges_follow_both_criteria_exactly():
    rng = np.random.default_rng(1)
    m = 12
    pk, off, ids = _random_packages(rng, 40, m)
    src, dst = rng.integers(0, m, 30), rng.integers(0, m, 30)
    keep = src != dst
    labels = rng.integers(0, 3, 30)
    R, _ = relation_table(src[keep], dst[keep], labels[keep], m)
    item, keys, counts = pair_counts(off, ids, m)
    C = cooccurrence_table(item, keys, counts, m)
    Rd, Cd = R.dense(), C.dense()
    thr = 0.3
    edges = package_edges(off, ids, R, C, thr)
    for k, p in enumerate(pk):
        s, e = edges.offsets[k], edges.offsets[k + 1]
        got = {(p[a], p[b]) for a, b in zip(edges.src[s:e], edges.dst[s:e])}
        want = {(v, u) for v, u in itertools.permutations(p, 2) if Rd[v, u] != -1 or Cd[v, u] > thr}
        assert got == want
        for a, b, rel, pp, w in zip(edges.src[s:e], edges.dst[s:e], edges.rel[s:e], edges.p[s:e], edges.w[s:e]):
            v, u = p[a], p[b]
            assert rel == Rd[v, u]
            assert pp == pytest.approx(Cd[v, u])
            assert w == pytest.approx({1: 1.0, 2: -1.0}.get(int(rel), Cd[v, u]))


def test_raising_threshold_without_rebuild_matches_rebuild():
    rng = np.random.default_rng(2)
    m = 10
    _, off, ids = _random_packages(rng, 50, m)
    R, _ = relation_table(np.array([0, 1]), np.array([1, 2]), np.array([1, 2]), m)
    item, keys, counts = pair_counts(off, ids, m)
    C = cooccurrence_table(item, keys, counts, m)
    low = package_edges(off, ids, R, C, 0.01)
    high = package_edges(off, ids, R, C, 0.4)
    kept = filter_edges(low.rel, low.p, 0.4)
    assert kept.sum() == len(high.src)
    np.testing.assert_array_equal(low.src[kept], high.src)
    np.testing.assert_array_equal(low.dst[kept], high.dst)


def test_relation_conflicts_keep_antagonism():
    R, conflicts = relation_table(np.array([0, 0, 1]), np.array([1, 1, 0]), np.array([1, 2, 0]), 3)
    assert conflicts == 1
    assert R.dense()[0, 1] == 2 and R.dense()[1, 0] == 0 and R.dense()[2, 2] == -1


def test_pair_table_lookup_default():
    t = PairTable(4, np.array([1, 5], np.int64), np.array([0.5, 0.25], np.float32))
    np.testing.assert_allclose(t.lookup(np.array([5, 2, 1]), 0.0), [0.25, 0.0, 0.5])
