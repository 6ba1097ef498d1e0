"""Candidate sets and the pick from them (dpr_dist/eval/candidate_sets.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpr_dist.eval.candidates import CandidateIndex


def _random_index(n=60, d=16, m=30, seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, d)).astype(np.float32)
    packages = [rng.choice(m, size=rng.integers(1, 6), replace=True) for _ in range(n)]
    return emb, packages, CandidateIndex(emb, packages)


def test_flat_and_pick():
    emb, packages, index = _random_index(n=60, seed=4)
    cands = index.query(emb[:5], k=4, exclude=np.arange(5))
    owner, csr = cands.flat()
    assert owner.tolist() == np.repeat(np.arange(5), cands.counts).tolist()
    flat_packages = [csr.indices[csr.indptr[i] : csr.indptr[i + 1]] for i in range(owner.size)]
    nested = [p for row in cands.packages for p in row]
    assert len(flat_packages) == len(nested)
    for a, b in zip(flat_packages, nested):
        np.testing.assert_array_equal(a, b)
    for c, row in zip(cands.packages, cands.neighbors):
        for p, r in zip(c, row):
            np.testing.assert_array_equal(p, np.unique(packages[r]))
    scores = np.random.default_rng(0).normal(size=owner.size)
    slot, picked = cands.pick(torch.from_numpy(scores))
    for q in range(5):
        best = np.flatnonzero(owner == q)[np.argmax(scores[owner == q])]
        np.testing.assert_array_equal(picked[q], flat_packages[best])
        assert slot[q] == best - np.flatnonzero(owner == q)[0]
    with pytest.raises(ValueError, match="one per candidate"):
        cands.pick(scores[:-1])
    bad = scores.copy()
    bad[-1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cands.pick(bad)


def test_pick_without_candidates():
    index = CandidateIndex(np.ones((1, 2)), [np.array([3])])
    cands = index.query(np.ones((2, 2)), k=2, exclude=np.array([0, -1]))
    slot, picked = cands.pick(np.array([1.0]))
    assert slot.tolist() == [-1, 0]
    assert picked[0].size == 0 and picked[1].tolist() == [3]
