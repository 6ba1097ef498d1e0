"""Picking the candidate of highest expected F1 (minimum Bayes risk), an option beside the
paper's rule.

The paper's package models recommend the candidate with the highest score (5.1.1). The
score ranks packages; the pick is then judged by its F1 against the true package. Those
are different objectives: a candidate the model scores a little above the others can be an
outlier of its set, while the candidates that agree with most of the others are the safer
bet for F1 (docs/results.md, "Picking by expected F1", has the measurements).

Minimum Bayes risk (MBR) decoding, standard in machine translation, picks for the metric:
read the model's scores over a patient's candidates ``S`` as a distribution
``p = softmax(s / T)`` over which candidate is the true package, and recommend

    c* = argmax_{c in S}  sum_{c' in S} p(c') F1(c, c')

the candidate with the highest F1 expected under that distribution. ``T = 1`` uses the
scores as trained by the candidate-ranking term (``train.rank_weight``), whose listwise
cross-entropy fits ``softmax(s)`` to ``softmax(F1 / rank_tau)``; ``T -> 0`` is the
paper's argmax; ``T -> inf`` ignores the model and picks the set's medoid.

Everything is computed from the CSR packages of :meth:`Candidates.flat`, a chunk of
queries at a time: each query's candidates as a dense multi-hot ``[k, drugs]`` block, the
pairwise intersections as one batched product ``[queries, k, k]``, so only pairs of the
same query are ever computed.
"""

from __future__ import annotations

import numpy as np

from dpr_dist.eval.candidate_sets import Candidates

#: Dense cells per chunk: a chunk of queries is one ``[queries, k, drugs]`` multi-hot array
#: (float32; 2**23 cells = 32 MiB).
CHUNK_CELLS = 1 << 23


def group_softmax(scores: np.ndarray, owner: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(scores / temperature)`` within each query's candidates.

    Args:
        scores: ``[C]`` one score per candidate, ``owner`` sorted (the order of
            :meth:`Candidates.flat`).
        owner: ``[C]`` query row of each candidate, non-decreasing.
        temperature: ``T > 0``.

    Returns:
        ``[C]`` float64 probabilities summing to 1 over each query's candidates.
    """
    if not temperature > 0:
        raise ValueError(f"MBR temperature must be > 0, got {temperature}")
    if scores.size == 0:
        return np.zeros(0)
    edges = _query_edges(owner)
    starts, counts = edges[:-1], np.diff(edges)
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = z - np.repeat(np.maximum.reduceat(z, starts), counts)
    e = np.exp(z)
    return e / np.repeat(np.add.reduceat(e, starts), counts)


def _query_edges(owner: np.ndarray) -> np.ndarray:
    """Where each query's candidates start in ``owner`` (non-decreasing), plus ``owner.size``."""
    return np.r_[np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]), owner.size]


def expected_f1(cands: Candidates, scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Expected F1 of every candidate against its query's other candidates.

    Args:
        cands: Candidate sets of ``Q`` queries.
        scores: ``[C]`` the model's scores in the order of :meth:`Candidates.flat`.
        temperature: ``T`` of ``p = softmax(s / T)``.

    Returns:
        ``[C]`` float64 ``sum_{c'} p(c') F1(c, c')`` over the same query's candidates, in
        the same order (F1 as in :mod:`dpr_dist.eval.metrics`: 1 for a non-empty package
        with itself, 0 for two empty ones); pass it to :meth:`Candidates.pick`.

    Raises:
        ValueError: on a wrong number of scores, NaN scores, or ``temperature <= 0``.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    owner, csr = cands.flat()
    if scores.size != owner.size:
        raise ValueError(f"scores: expected {owner.size} values (one per candidate), got {scores.size}")
    if np.isnan(scores).any():
        raise ValueError(f"scores: NaN for query rows {np.unique(owner[np.isnan(scores)])[:10].tolist()}")
    p = group_softmax(scores, owner, temperature)
    out = np.zeros(owner.size)
    if owner.size == 0:
        return out
    edges = _query_edges(owner)
    counts = np.diff(edges)
    query = np.repeat(np.arange(counts.size), counts)  # rank of each candidate's query among those with any
    slot = np.arange(owner.size) - edges[query]  # position within its query
    k, v = int(counts.max()), int(csr.indices.max(initial=-1)) + 1
    step = max(1, CHUNK_CELLS // max(k * v, 1))
    for a in range(0, counts.size, step):  # whole queries, padded to [n, k, v]
        b = min(a + step, counts.size)
        lo, hi = int(edges[a]), int(edges[b])
        x = np.zeros((b - a, k, max(v, 1)), dtype=np.float32)
        cand = np.repeat(np.arange(lo, hi), np.diff(csr.indptr[lo: hi + 1]))
        x[query[cand] - a, slot[cand], csr.indices[csr.indptr[lo]: csr.indptr[hi]]] = 1.0  # drugs counted once
        inter = np.matmul(x, x.transpose(0, 2, 1)).astype(np.float64)  # [n, k, k] shared drugs
        sizes = x.sum(axis=2, dtype=np.float64)
        denom = sizes[:, :, None] + sizes[:, None, :]
        f1 = np.divide(2.0 * inter, denom, out=np.zeros_like(inter), where=denom > 0)
        pg = np.zeros((b - a, k))
        pg[query[lo:hi] - a, slot[lo:hi]] = p[lo:hi]  # padding slots weigh 0
        out[lo:hi] = np.einsum("nij,nj->ni", f1, pg)[query[lo:hi] - a, slot[lo:hi]]
    return out


def mbr_pick(cands: Candidates, scores: np.ndarray, temperature: float = 1.0) -> tuple[np.ndarray, list[np.ndarray]]:
    """The candidate of highest expected F1 for every query (:meth:`Candidates.pick` of
    :func:`expected_f1`; ties go to the more similar neighbour)."""
    return cands.pick(expected_f1(cands, scores, temperature))
