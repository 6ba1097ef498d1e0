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

Everything is computed on the CSR packages of :meth:`Candidates.flat`, a chunk of queries
at a time, with a sparse product for the pairwise intersections.
"""

from __future__ import annotations

import numpy as np

from dpr_dist.eval.candidates import Candidates
from dpr_dist.eval.package_csr import multihot

#: Candidates per chunk: the pairwise intersections of a chunk are one dense ``[n, n]`` array.
CHUNK_CANDIDATES = 2048


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
    x = multihot(csr, int(csr.indices.max(initial=-1)) + 1)
    sizes = np.diff(x.indptr)  # distinct drugs per candidate
    edges = _query_edges(owner)
    start = 0
    while start < owner.size:  # whole queries, up to CHUNK_CANDIDATES candidates (at least one query)
        end = int(edges[max(np.searchsorted(edges, start + CHUNK_CANDIDATES, side="right") - 1,
                            np.searchsorted(edges, start, side="right"))])
        xc = x[start:end]
        inter = (xc @ xc.T).toarray()
        denom = sizes[start:end, None] + sizes[None, start:end]
        f1 = np.divide(2.0 * inter, denom, out=np.zeros_like(inter, dtype=np.float64), where=denom > 0)
        same = owner[start:end, None] == owner[None, start:end]
        out[start:end] = (f1 * same) @ p[start:end]
        start = end
    return out


def mbr_pick(cands: Candidates, scores: np.ndarray, temperature: float = 1.0) -> tuple[np.ndarray, list[np.ndarray]]:
    """The candidate of highest expected F1 for every query (:meth:`Candidates.pick` of
    :func:`expected_f1`; ties go to the more similar neighbour)."""
    return cands.pick(expected_f1(cands, scores, temperature))
