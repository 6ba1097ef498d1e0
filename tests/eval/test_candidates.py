"""Tests of dpr_dist.eval.candidates: cosine top-k candidate sets, dedupe, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpr_dist.eval.candidates import CandidateIndex, brute_force_topk


def _random_index(n=200, d=16, m=30, seed=0, record_ids=True):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, d)).astype(np.float32)
    packages = [rng.choice(m, size=rng.integers(1, 9), replace=False) for _ in range(n)]
    ids = [f"rec-{i}" for i in range(n)] if record_ids else None
    return emb, packages, CandidateIndex(emb, packages, record_ids=ids)


@pytest.mark.parametrize("chunk", [None, 7])
def test_query_equals_brute_force_top10(chunk):
    emb, _, index = _random_index()
    queries = np.random.default_rng(1).normal(size=(30, 16)).astype(np.float32)
    cands = index.query(torch.from_numpy(queries), k=10, dedupe=False, chunk=chunk)
    ref_nb, ref_sim = brute_force_topk(emb, queries, 10)
    np.testing.assert_array_equal(cands.neighbors, ref_nb)
    np.testing.assert_allclose(cands.similarity, ref_sim, atol=1e-5)
    # numpy input gives the same answer
    np.testing.assert_array_equal(index.query(queries, k=10, dedupe=False).neighbors, ref_nb)


def test_number_of_neighbours_is_configurable_and_pads():
    emb, _, index = _random_index(n=4)
    cands = index.query(emb[:2], k=6, dedupe=False)
    assert cands.neighbors.shape == (2, 6)
    assert np.all(cands.neighbors[:, 4:] == -1) and np.all(np.isneginf(cands.similarity[:, 4:]))
    assert np.all(cands.counts == 4)
    assert index.query(emb[:2], k=3).neighbors.shape == (2, 3)


def test_exclude_self():
    emb, _, index = _random_index()
    own = np.arange(50)
    plain = index.query(emb[:50], k=10, dedupe=False)
    assert np.all(plain.neighbors[:, 0] == own)  # each row is its own nearest neighbour
    np.testing.assert_allclose(plain.similarity[:, 0], 1.0, atol=1e-5)
    excl = index.query(emb[:50], k=10, exclude=own, dedupe=False)
    assert not np.any(excl.neighbors == own[:, None])
    ref_nb, _ = brute_force_topk(emb, emb[:50], 10, exclude=own)
    np.testing.assert_array_equal(excl.neighbors, ref_nb)
    # -1 means "exclude nothing" for that query
    mixed = index.query(emb[:2], k=3, exclude=np.array([-1, 1]), dedupe=False)
    assert mixed.neighbors[0, 0] == 0 and 1 not in mixed.neighbors[1]
    # a tiny index with everything excluded but one row
    small = CandidateIndex(emb[:2], [np.array([1]), np.array([2])])
    got = small.query(emb[:2], k=3, exclude=np.array([0, 1]), dedupe=False)
    np.testing.assert_array_equal(got.neighbors, [[1, -1, -1], [0, -1, -1]])


def test_dedupe_keeps_most_similar_occurrence():
    rng = np.random.default_rng(2)
    base = rng.normal(size=8)
    emb = np.stack([base + 0.01 * rng.normal(size=8) * (i + 1) for i in range(6)])
    emb = np.concatenate([emb, rng.normal(size=(4, 8))])
    # rows 0, 2, 4 hold the same package written three ways; rows 1, 3 another one
    packages = [[3, 1], [5], [1, 3], [5, 5], [1, 3, 3], [7, 8]] + [[9]] * 4
    index = CandidateIndex(emb, [np.array(p) for p in packages])
    query = base[None, :]
    full = index.query(query, k=6, dedupe=False)
    dedup = index.query(query, k=6, dedupe=True)
    full_rows = full.neighbors[0].tolist()
    kept = dedup.neighbors[0][dedup.valid[0]].tolist()
    # first occurrence (most similar) of each distinct package, in similarity order
    seen, expect = set(), []
    for r in full_rows:
        key = tuple(sorted(set(packages[r])))
        if key not in seen:
            seen.add(key)
            expect.append(r)
    assert kept == expect and len(kept) < 6
    assert np.all(np.diff(dedup.similarity[0][dedup.valid[0]]) <= 0)
    assert np.all(dedup.neighbors[0, len(kept):] == -1)
    # the set of candidate packages does not change
    as_set = lambda c: {tuple(p.tolist()) for p in c.packages[0]}  # noqa: E731
    assert as_set(full) == as_set(dedup)


def test_packages_are_stored_as_sorted_sets():
    index = CandidateIndex(np.eye(3), [np.array([4, 2, 4]), np.array([], dtype=int), np.array([0])])
    np.testing.assert_array_equal(index.package(0), [2, 4])
    assert index.package(1).size == 0
    assert index.package_ids[0] != index.package_ids[1] != index.package_ids[2]


def test_save_load_round_trip(tmp_path):
    emb, _, index = _random_index(n=40, seed=6)
    index.save(tmp_path / "model")
    loaded = CandidateIndex.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.embeddings.numpy(), index.embeddings.numpy())
    np.testing.assert_array_equal(loaded.indptr, index.indptr)
    np.testing.assert_array_equal(loaded.indices, index.indices)
    np.testing.assert_array_equal(loaded.record_ids, index.record_ids)
    np.testing.assert_array_equal(loaded.package_ids, index.package_ids)
    q = emb[:7]
    np.testing.assert_array_equal(loaded.query(q).neighbors, index.query(q).neighbors)
    assert loaded.ids(np.array([3, -1])).tolist() == ["rec-3", ""]
    _, _, anonymous = _random_index(n=10, record_ids=False)
    path = anonymous.save(tmp_path / "anon")
    assert CandidateIndex.load(path).record_ids is None
    with pytest.raises(FileNotFoundError):
        CandidateIndex.load(tmp_path / "missing")


def test_bad_input_names_record_without_values():
    emb = np.ones((3, 2))
    emb[1, 0] = np.nan
    with pytest.raises(ValueError, match="record 'b'") as err:
        CandidateIndex(emb, [np.array([1])] * 3, record_ids=["a", "b", "c"])
    assert "nan" not in str(err.value).lower()
    with pytest.raises(ValueError, match="expected 3 packages"):
        CandidateIndex(np.ones((3, 2)), [np.array([1])] * 2)
    with pytest.raises(ValueError, match=r"packages\[2\].*non-negative"):
        CandidateIndex(np.ones((3, 2)), [np.array([1]), np.array([2]), np.array([-1])])
    index = CandidateIndex(np.ones((3, 2)), [np.array([1])] * 3)
    with pytest.raises(ValueError, match="query row 1"):
        index.query(np.ones((2, 2)), exclude=np.array([0, 3]))
    with pytest.raises(ValueError, match=r"shape \[Q, 2\]"):
        index.query(np.ones((2, 5)))
    with pytest.raises(ValueError, match="query row 0"):
        index.query(np.full((1, 2), np.inf))
