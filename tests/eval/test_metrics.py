"""Tests of dpr_dist.eval.metrics against hand-computed examples and references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dpr_dist.eval.candidates import CandidateIndex, Candidates
from dpr_dist.eval.metrics import (
    antagonism_rate,
    mean_package_size,
    oracle_ceiling,
    package_prf,
    summarize,
    topk_drugs,
)
from dpr_dist.eval.package_csr import PackageCSR

A = np.array

PRED = [A([1, 2, 3]), A([4]), A([], dtype=np.int64), A([1, 1, 2]), A([7, 8]), A([], dtype=np.int64)]
TRUE = [A([2, 3, 5, 6]), A([5]), A([1, 2]), A([1, 3]), A([8, 7]), A([], dtype=np.int64)]
# precision, recall, f1, jaccard per record, by hand
EXPECTED = np.array(
    [
        [2 / 3, 1 / 2, 4 / 7, 2 / 5],  # 2 shared of 3 predicted, 4 true, 5 in union
        [0, 0, 0, 0],  # empty intersection
        [0, 0, 0, 0],  # empty prediction
        [1 / 2, 1 / 2, 1 / 2, 1 / 3],  # duplicate 1 counts once: {1,2} vs {1,3}
        [1, 1, 1, 1],  # same set, other order
        [0, 0, 0, 0],  # both empty: 0/0 -> 0
    ]
)


def _csr(packages):
    indptr = np.concatenate([[0], np.cumsum([len(p) for p in packages])])
    return PackageCSR(indptr, np.concatenate(packages).astype(np.int64))


def test_package_prf_hand_examples():
    out = package_prf(PRED, TRUE)
    got = np.stack([out["precision"], out["recall"], out["f1"], out["jaccard"]], axis=1)
    np.testing.assert_allclose(got, EXPECTED, atol=1e-12)


def test_package_prf_csr_input_matches_lists():
    a = package_prf(PRED, TRUE)
    b = package_prf(_csr(PRED), tuple(_csr(TRUE)))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_package_prf_matches_set_reference_on_random_data():
    rng = np.random.default_rng(3)
    pred = [rng.integers(0, 15, size=rng.integers(0, 6)) for _ in range(200)]
    true = [rng.integers(0, 15, size=rng.integers(1, 6)) for _ in range(200)]
    out = package_prf(pred, true)
    for i, (p, t) in enumerate(zip(pred, true)):
        p, t = set(p.tolist()), set(t.tolist())
        prec = len(p & t) / len(p) if p else 0.0
        rec = len(p & t) / len(t)
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        assert out["precision"][i] == pytest.approx(prec)
        assert out["recall"][i] == pytest.approx(rec)
        assert out["f1"][i] == pytest.approx(f1)
        assert out["jaccard"][i] == pytest.approx(len(p & t) / len(p | t))


def test_package_prf_bad_input_names_the_record():
    with pytest.raises(ValueError, match="pred has 2 packages but true has 1"):
        package_prf([A([1]), A([2])], [A([1])])
    with pytest.raises(ValueError, match=r"pred\[1\].*non-negative"):
        package_prf([A([1]), A([2, -3])], [A([1]), A([2])])
    with pytest.raises(ValueError, match=r"true\[0\].*integers"):
        package_prf([A([1])], [A([1.5])])
    with pytest.raises(ValueError, match="indptr"):
        package_prf((A([0, 5]), A([1, 2])), [A([1])])


def _relation() -> np.ndarray:
    rel = np.full((4, 4), -1, dtype=np.int8)
    rel[0, 1] = 2  # antagonism one way only
    rel[1, 0] = 0
    rel[2, 3] = rel[3, 2] = 2
    rel[1, 2] = rel[2, 1] = 1  # synergism is not counted
    rel[0, 0] = 2  # the diagonal is never a pair
    return rel


def test_antagonism_rate_constructed_relation():
    packages = [A([0, 1, 2]), A([2, 3, 3]), A([0])]
    # ordered pairs: 6 in {0,1,2} (hit: (0,1)), 2 in {2,3} (hits: both), 0 in {0}
    assert antagonism_rate(packages, _relation()) == pytest.approx(3 / 8)
    assert antagonism_rate(packages, torch.from_numpy(_relation())) == pytest.approx(3 / 8)
    assert antagonism_rate([A([0]), A([0, 0])], _relation()) == 0.0
    assert antagonism_rate([A([3, 2])], _relation()) == 1.0


def test_antagonism_rate_matches_pair_loop():
    rng = np.random.default_rng(5)
    m = 12
    rel = rng.integers(-1, 3, size=(m, m)).astype(np.int8)
    packages = [rng.choice(m, size=rng.integers(1, 7), replace=False) for _ in range(100)]
    hits = pairs = 0
    for p in packages:
        for a, b in itertools.permutations(p.tolist(), 2):
            pairs += 1
            hits += rel[a, b] == 2
    assert antagonism_rate(packages, rel) == pytest.approx(hits / pairs)


def test_antagonism_rate_rejects_unknown_drug_and_bad_relation():
    with pytest.raises(ValueError, match=r"packages\[1\].*outside the relation"):
        antagonism_rate([A([0, 1]), A([2, 4])], _relation())
    with pytest.raises(ValueError, match="square"):
        antagonism_rate([A([0, 1])], np.zeros((3, 4), dtype=np.int8))


def _candidates(neighbors, packages):
    csr = _csr(packages)
    neighbors = np.asarray(neighbors, dtype=np.int64)
    sim = np.where(neighbors >= 0, 0.5, -np.inf).astype(np.float32)
    return Candidates(neighbors, sim, csr.indptr, csr.indices)


def test_oracle_ceiling_hand_example():
    packages = [A([1, 2]), A([1, 2, 3, 4]), A([9])]
    cands = _candidates([[0, 2, -1], [2, 1, 0], [-1, -1, -1]], packages)
    true = [A([1, 2, 3]), A([1, 2, 3]), A([1])]
    # query 0: {1,2} -> f1 0.8, {9} -> 0; query 1: best {1,2,3,4} -> 6/7; query 2: none
    np.testing.assert_allclose(oracle_ceiling(cands, true), [0.8, 6 / 7, 0.0])


def test_oracle_ceiling_bounds_every_pick():
    rng = np.random.default_rng(11)
    n, q, m = 120, 40, 25
    packages = [rng.choice(m, size=rng.integers(1, 8), replace=False) for _ in range(n)]
    index = CandidateIndex(rng.normal(size=(n, 6)), packages)
    cands = index.query(torch.from_numpy(rng.normal(size=(q, 6))), k=10)
    true = [rng.choice(m, size=rng.integers(1, 8), replace=False) for _ in range(q)]
    ceiling = oracle_ceiling(cands, true)
    owner, _ = cands.flat()
    best_seen = np.zeros(q)
    for _ in range(20):
        _, picked = cands.pick(rng.normal(size=owner.size))
        f1 = package_prf(picked, true)["f1"]
        assert np.all(f1 <= ceiling + 1e-12)
        best_seen = np.maximum(best_seen, f1)
    # the ceiling is attained: it equals the best F1 among the candidate packages
    per_candidate = [max(package_prf(c, [t] * len(c))["f1"]) for c, t in zip(cands.packages, true)]
    np.testing.assert_allclose(ceiling, per_candidate)
    assert np.all(best_seen <= ceiling + 1e-12)


def test_summarize_values():
    rel = np.full((10, 10), 0, dtype=np.int8)
    rel[1, 2] = rel[2, 1] = 2
    pred, true = PRED[:5], TRUE[:5]
    ceiling = np.array([0.8, 0.5, 1.0, 0.5, 1.0])
    out = summarize(pred, true, rel, ceiling=ceiling)
    assert set(out) == {
        "precision", "recall", "f1", "jaccard", "antagonism_rate",
        "true_antagonism_rate", "ceiling_f1", "f1_of_ceiling", "n",
    }
    assert out["n"] == 5
    assert out["precision"] == pytest.approx(EXPECTED[:5, 0].mean())
    assert out["f1"] == pytest.approx(EXPECTED[:5, 2].mean())
    assert out["jaccard"] == pytest.approx(EXPECTED[:5, 3].mean())
    # pred pairs: {1,2,3}: 6 (hits 2); {1,2}: 2 (hits 2); {7,8}: 2 -> 4/10
    assert out["antagonism_rate"] == pytest.approx(4 / 10)
    # true pairs: {2,3,5,6}: 12; {1,2}: 2 (hits 2); {1,3}: 2; {7,8}: 2 -> 2/18
    assert out["true_antagonism_rate"] == pytest.approx(2 / 18)
    assert out["ceiling_f1"] == pytest.approx(ceiling.mean())
    assert out["f1_of_ceiling"] == pytest.approx(out["f1"] / ceiling.mean())
    no_ceiling = summarize(pred, true, rel)
    assert no_ceiling["ceiling_f1"] is None and no_ceiling["f1_of_ceiling"] is None
    with pytest.raises(ValueError, match="ceiling"):
        summarize(pred, true, rel, ceiling=np.ones(3))
    with pytest.raises(ValueError, match="no records"):
        summarize([], [], rel)


def test_topk_drugs():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]])
    out = topk_drugs(scores, 2)
    np.testing.assert_array_equal(out[0], [1, 3])
    np.testing.assert_array_equal(out[1], [0, 1])
    out = topk_drugs(scores.numpy(), 3, exclude=np.array([False, True, False, False]))
    np.testing.assert_array_equal(out[0], [3, 2, 0])
    np.testing.assert_array_equal(out[1], [0, 2, 3])
    mask = torch.tensor([[True, True, True, False], [False, False, False, False]])
    out = topk_drugs(scores, 2, exclude=mask)
    np.testing.assert_array_equal(out[0], [3])  # only one drug allowed
    np.testing.assert_array_equal(out[1], [0, 1])
    assert [len(p) for p in topk_drugs(scores, 10)] == [4, 4]
    assert [len(p) for p in topk_drugs(scores, 0)] == [0, 0]
    with pytest.raises(ValueError, match="row 1"):
        topk_drugs(torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]), 1)
    with pytest.raises(ValueError, match="exclude"):
        topk_drugs(scores, 1, exclude=np.zeros(3, dtype=bool))


def test_mean_package_size():
    assert mean_package_size([A([1, 2, 3]), A([4, 4]), A([5, 6, 7, 8])]) == 3  # (3+1+4)/3
    assert mean_package_size([A([1])]) == 1
