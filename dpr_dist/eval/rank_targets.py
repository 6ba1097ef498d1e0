"""How predictable the candidate-ranking term's targets are, measured without a model.

The ranking term (:mod:`dpr_dist.models.ranking`, ``train.rank_weight``) trains a package
model on each training patient's candidate neighbourhood with a listwise cross-entropy
towards ``softmax(F1(candidate, own package) / tau)``. :func:`target_predictability`
measures, on the same neighbourhoods (:func:`~dpr_dist.train.neighbourhood.neighbour_table`
of a model directory's candidate index), how far any scorer could take that loss:

* ``target_entropy``: the mean entropy of the targets, the lowest cross-entropy a scorer
  can reach (it would have to know every candidate's F1 against the patient's package);
* ``uniform_ce``: the cross-entropy of a uniform guess (``log`` of the set's size);
* ``consensus_ce``: the cross-entropy of a guess that looks at no patient at all,
  ``softmax(consensus / T)`` with each candidate's consensus its mean F1 against the other
  candidates of the set (:func:`~dpr_dist.train.neighbourhood.consensus_f1`), per ``T``.

A trained model's ranking loss (``rank_loss`` in its training history, the mean over an
epoch) sits on the same scale; ``docs/results.md`` ("How much of the ranking target is
predictable") compares them.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.eval.metrics import package_prf
from dpr_dist.eval.package_csr import PackageCSR, gather_rows
from dpr_dist.train.neighbourhood import consensus_f1, neighbour_table


def _log_softmax(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``x`` [B, k] over the ``valid`` slots (others ``-inf``)."""
    z = np.where(valid, x, -np.inf)
    top = z.max(axis=1, keepdims=True)
    return z - top - np.log(np.exp(z - top).sum(axis=1, keepdims=True))


def _cross_entropy(p: np.ndarray, log_q: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``-sum_c p_c log q_c`` per row, over the valid slots (``p`` is 0 on the others)."""
    return -(p * np.where(valid, log_q, 0.0)).sum(axis=1)


def target_predictability(index: CandidateIndex, k: int = 10, tau: float = 0.1, every: int = 1,
                          consensus_temperatures: Sequence[float] = (0.1, 0.2, 0.4)) -> dict[str, Any]:
    """The ranking targets' entropy against a uniform and a consensus guess.

    Args:
        index: A candidate index of the training split (``ModelBundle.index``).
        k: Neighbourhood size (``train.rank_neighbors``).
        tau: Target temperature (``train.rank_tau``).
        every: Use every ``every``-th training patient (1: all of them).
        consensus_temperatures: Temperatures ``T`` of the consensus guess.

    Returns:
        ``{"patients", "k", "tau", "mean_candidates", "ceiling_f1", "mean_candidate_f1",
        "target_entropy", "uniform_ce", "consensus_ce": {T: ce}}``, means over the patients
        with at least one candidate (natural logarithms, nats).

    Raises:
        ValueError: on ``every < 1``, ``tau <= 0`` or a temperature ``<= 0``.
    """
    if every < 1 or tau <= 0 or any(t <= 0 for t in consensus_temperatures):
        raise ValueError(f"target_predictability: every={every} must be >= 1, tau={tau} and the temperatures "
                         f"{list(consensus_temperatures)} > 0")
    rows = np.arange(0, len(index), every, dtype=np.int64)
    nb = neighbour_table(index, k, rows=rows)
    keep = (nb >= 0).any(axis=1)
    rows, nb = rows[keep], nb[keep]
    valid = nb >= 0
    owner, col = np.nonzero(valid)
    packages = PackageCSR(index.indptr, index.indices)
    cands = gather_rows(packages, nb[valid])
    f1_flat = package_prf(cands, gather_rows(packages, rows[owner]))["f1"]
    f1 = np.zeros(nb.shape)
    f1[owner, col] = f1_flat
    consensus = np.zeros(nb.shape)
    consensus[owner, col] = consensus_f1(cands, owner, f1_flat)
    log_p = _log_softmax(f1 / tau, valid)
    p = np.exp(log_p)
    size = valid.sum(axis=1)
    guesses = {float(t): float(_cross_entropy(p, _log_softmax(consensus / t, valid), valid).mean())
               for t in consensus_temperatures}
    return {"patients": int(rows.size), "k": int(k), "tau": float(tau), "mean_candidates": float(size.mean()),
            "ceiling_f1": float(np.where(valid, f1, -np.inf).max(axis=1).mean()),
            "mean_candidate_f1": float(f1_flat.mean()),
            "target_entropy": float(_cross_entropy(p, log_p, valid).mean()),
            "uniform_ce": float(np.log(size).mean()), "consensus_ce": guesses}
