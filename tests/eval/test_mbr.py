"""Picking the candidate of highest expected F1 (``dpr_dist.eval.mbr``)."""

from __future__ import annotations

import numpy as np
import pytest

from dpr_dist.config import GenerationConfig
from dpr_dist.eval import mbr
from dpr_dist.eval.candidate_sets import Candidates
from dpr_dist.eval.evaluate import evaluate_models, score_candidates, encode_records
from dpr_dist.eval.generation_eval import generation_metrics

from toy_bundles import toy_bundle, toy_records


def _candidates(sets: list[list[list[int]]], k: int) -> Candidates:
    """Candidate sets from nested lists of drug ids (``k`` slots per query, padding -1)."""
    flat = [p for s in sets for p in s]
    indptr = np.concatenate([[0], np.cumsum([len(p) for p in flat])]).astype(np.int64)
    indices = np.array([d for p in flat for d in p], dtype=np.int64)
    neighbors = np.full((len(sets), k), -1, dtype=np.int64)
    row = 0
    for q, s in enumerate(sets):
        neighbors[q, : len(s)] = np.arange(row, row + len(s))
        row += len(s)
    similarity = np.where(neighbors >= 0, 1.0 - 0.01 * np.arange(k), -np.inf).astype(np.float32)
    return Candidates(neighbors, similarity, indptr, indices)


def _f1(a, b) -> float:
    a, b = set(a), set(b)
    return 2 * len(a & b) / (len(a) + len(b)) if a or b else 0.0


def _brute(sets, scores, t):
    """Expected F1 of every candidate, with loops."""
    out, i = [], 0
    for s in (s for s in sets if s):
        sc = np.asarray(scores[i: i + len(s)], dtype=np.float64)
        p = np.exp((sc - sc.max()) / t)
        p /= p.sum()
        out += [sum(p[j] * _f1(a, b) for j, b in enumerate(s)) for a in s]
        i += len(s)
    return np.array(out)


def test_the_consensus_beats_an_outlier_with_the_top_score():
    # three near-identical packages and one outlier that the model scores highest
    sets = [[[0, 1, 2, 3], [0, 1, 2, 4], [0, 1, 2, 5], [6, 7]]]
    c, scores = _candidates(sets, 4), np.array([0.0, 0.0, 0.0, 0.5])
    assert c.pick(scores)[0].tolist() == [3]  # the paper's rule: the best score
    # p = softmax(s) = (0.2151, 0.2151, 0.2151, 0.3547); E[F1] of a consensus package =
    # 0.2151 * (1 + 0.75 + 0.75) = 0.5378 against the outlier's 0.3547
    u = mbr.expected_f1(c, scores, 1.0)
    assert u == pytest.approx([0.5378, 0.5378, 0.5378, 0.3547], abs=1e-4)
    slot, picked = mbr.mbr_pick(c, scores, 1.0)
    assert slot.tolist() == [0] and picked[0].tolist() == [0, 1, 2, 3]  # ties: the most similar neighbour
    assert mbr.mbr_pick(c, scores, 0.01)[0].tolist() == [3]  # T -> 0 is the argmax


def test_matches_a_brute_force_with_padding_empty_sets_and_chunks(monkeypatch):
    rng = np.random.default_rng(0)
    sets = [[sorted(rng.choice(30, int(rng.integers(1, 8)), replace=False).tolist())
             for _ in range(int(rng.integers(0, 6)))] for _ in range(40)]
    sets[3] = []  # a query without candidates
    sets[5] = [[1, 1, 2], [2, 1]]  # a repeated drug counts once: the two packages are equal
    c = _candidates(sets, 5)
    scores = rng.normal(size=sum(len(s) for s in sets))
    want = _brute(sets, scores, 0.7)
    assert mbr.expected_f1(c, scores, 0.7) == pytest.approx(want, abs=1e-12)
    for cells in (1, 5 * 30 * 3):  # one query per chunk; three queries per chunk
        monkeypatch.setattr(mbr, "CHUNK_CELLS", cells)
        assert mbr.expected_f1(c, scores, 0.7) == pytest.approx(want, abs=1e-12)
    slot, picked = mbr.mbr_pick(c, scores, 0.7)
    assert slot[3] == -1 and picked[3].size == 0


def test_group_softmax_and_the_medoid_limit():
    owner = np.array([0, 0, 0, 2, 2])
    p = mbr.group_softmax(np.array([1.0, 2.0, 3.0, -5.0, 5.0]), owner, 1.0)
    assert p[:3].sum() == pytest.approx(1) and p[3:].sum() == pytest.approx(1)
    assert p[:3] == pytest.approx(np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())
    # a huge temperature ignores the scores: the pick is the package closest to the others
    # (F1 with the others: 0.8 and 0.667; 0.8 and 0.857; 0.667 and 0.857)
    c = _candidates([[[0, 1], [0, 1, 2], [0, 1, 2, 3]]], 3)
    scores = np.array([0.0, -3.0, 9.0])
    assert c.pick(scores)[0].tolist() == [2]
    assert mbr.mbr_pick(c, scores, 1e9)[0].tolist() == [1]


def test_bad_scores_and_temperatures_are_refused():
    c = _candidates([[[0, 1], [2]]], 2)
    with pytest.raises(ValueError, match="expected 2 values"):
        mbr.expected_f1(c, np.zeros(3))
    with pytest.raises(ValueError, match="NaN for query rows \\[0\\]"):
        mbr.expected_f1(c, np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        mbr.expected_f1(c, np.zeros(2), 0.0)


def test_evaluation_adds_the_mbr_row_from_the_same_scores():
    b, q = toy_bundle("ag"), toy_records(17, 5, "Q")
    metrics, pred = evaluate_models(b, q, ["ag", "ncf"], mbr_temperature=1.0)
    assert list(metrics) == ["ag", "ncf", "ag+mbr"]
    assert metrics["ag+mbr"]["ceiling_f1"] == metrics["ag"]["ceiling_f1"]  # the same candidate sets
    assert metrics["ag+mbr"]["mbr_temperature"] == 1.0
    # the row is mbr_pick of the model's own scores
    u_ncf = encode_records(b.ncf.encode, q, b.num_doc_words)
    cands = b.index.query(u_ncf, k=b.cfg.eval.neighbors)
    b.model.eval()
    scores = score_candidates(b.model, encode_records(b.model.encode, q, b.num_doc_words), cands, b.relation,
                              b.cooc, b.threshold)
    want = mbr.mbr_pick(cands, scores, 1.0)[1]
    got = pred.filter(pred["model"].to_numpy(zero_copy_only=False) == "ag+mbr")["drug_ids"].to_pylist()
    assert [sorted(g) for g in got] == [sorted(w.tolist()) for w in want]
    assert list(evaluate_models(b, q, ["ag"])[0]) == ["ag"]  # no row without it


def test_generation_metrics_with_mbr():
    b, q = toy_bundle("wg"), toy_records(19, 6, "Q")
    gen = GenerationConfig(top_l=5, low_rank_l=8, unpopular_rank_L=4, rare_support=0.4)
    out = generation_metrics(b, q, gen, with_picks=True, mbr_temperature=1.0)
    plain = generation_metrics(b, q, gen, with_picks=True)
    assert out["s"] == plain["s"] and out["s1"] == plain["s1"]  # the other rows are unchanged
    assert out["s_mbr"]["ceiling_f1"] == out["s"]["ceiling_f1"] and out["s_mbr"]["n"] == 19
    assert len(out["picks_mbr"]) == 19 and "s_mbr" not in plain
