"""The training patients' candidate neighbourhoods ("train as you test") for the package models.

At test time a package model ranks the packages of the ``eval.neighbors`` training
patients most similar to the query (cosine similarity of the pre-trained patient
embeddings, :class:`~dpr_dist.eval.candidates.CandidateIndex`). Those packages are all
close to each other: same conditions, similar severity. The distributed global-batch
negatives (:mod:`dpr_dist.train.negatives`) are mostly packages of *other* conditions,
which the patient embedding alone separates; BPR on them alone never teaches the model
to tell apart the candidates it will actually have to rank.

This module gives each training patient its own candidate neighbourhood, used in two ways
(``train.rank_weight``, ``train.hard_negatives``; measured in ``docs/training.md``): as a
training candidate set ranked by F1 (:mod:`dpr_dist.models.ranking`), or as ``count`` of
its ``negative_ratio`` negatives besides the global-batch ones:

* :func:`neighbour_table` -- once per run, the ``k`` nearest *other* training patients of
  every training patient under the same pre-trained embeddings the candidate sets use,
  leaving out the patient itself and every neighbour whose package equals its own (a
  negative is never the patient's own package);
* :func:`sample_neighbours` -- per step, ``count`` of them per patient (without
  replacement while the neighbourhood allows);
* :class:`Neighbourhood` -- the training packages (drug ids only) and that table; per step
  it builds the chosen packages' graphs from the relation and co-occurrence tables exactly
  as evaluation builds candidate graphs (:func:`dpr_dist.eval.evaluate.candidate_graphs`)
  and puts them in the last ``count`` negative slots of each patient
  (:meth:`Neighbourhood.extend`), or gives each patient its whole neighbourhood as a
  training candidate set with the F1 of each candidate against the patient's own package
  (:meth:`Neighbourhood.candidates`, for :mod:`dpr_dist.models.ranking`), optionally
  shrunk toward the candidate's mean F1 against the rest of the set
  (:func:`consensus_f1`, ``train.rank_consensus``).

Everything is local to a rank: the table and the packages are read-only and shared by all
ranks (one object-store copy), so no extra collective is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

import torch

from dpr_dist.data.graphs import PairTable, package_edges
from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.eval.metrics import package_prf
from dpr_dist.eval.package_csr import PackageCSR, gather_rows
from dpr_dist.models.ranking import CandidateBatch
from dpr_dist.models.variants import reads_edges
from dpr_dist.train.packages import PackageSet


def neighbour_table(index: CandidateIndex, k: int, margin: int | None = None,
                    rows: np.ndarray | None = None) -> np.ndarray:
    """The ``k`` nearest other training patients of every training patient (or of ``rows``).

    Args:
        index: The candidate index of the training split (its normalized embeddings and
            canonical packages).
        k: Neighbours per patient (``train.hard_neighbors``; evaluation uses
            ``eval.neighbors``).
        margin: Extra neighbours queried so that ``k`` remain after dropping those whose
            package equals the patient's own (default ``k``).
        rows: The training patients (index rows) to find neighbours for (default: all).

    Returns:
        ``[N, k]`` (``[len(rows), k]``) int64 index rows, most similar first, ``-1`` padding at the end (a
        patient whose neighbours all share its package has fewer).
    """
    if k < 1:
        raise ValueError(f"neighbour_table: k must be >= 1, got {k}")
    n = len(index)
    extra = k if margin is None else max(0, int(margin))
    rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    cands = index.query(index.embeddings[rows], k=min(k + extra, max(n - 1, 1)), exclude=rows, dedupe=True)
    nb = cands.neighbors
    same = (nb >= 0) & (index.package_ids[np.maximum(nb, 0)] == index.package_ids[rows][:, None])
    keep = (nb >= 0) & ~same
    order = np.argsort(~keep, axis=1, kind="stable")  # kept first, similarity order preserved
    nb = np.take_along_axis(np.where(keep, nb, -1), order, axis=1)[:, :k]
    if nb.shape[1] < k:
        nb = np.concatenate([nb, np.full((rows.size, k - nb.shape[1]), -1, np.int64)], axis=1)
    return nb


def sample_neighbours(table: np.ndarray, rows: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` neighbours of each patient ``rows``, without replacement while possible.

    Args:
        table: ``[N, k]`` from :func:`neighbour_table`.
        rows: ``[B]`` training rows of the batch's patients (``-1``: unknown patient).
        count: Neighbours per patient.
        rng: The step's generator.

    Returns:
        ``[B, count]`` int64 training rows; ``-1`` where a patient has no neighbour.
    """
    rows = np.asarray(rows, dtype=np.int64)
    b = rows.size
    if count < 1 or b == 0:
        return np.full((b, max(count, 0)), -1, np.int64)
    nb = np.where(rows[:, None] >= 0, table[np.maximum(rows, 0)], -1)
    valid = nb >= 0
    n_valid = valid.sum(axis=1)
    keys = np.where(valid, rng.random(nb.shape), np.inf)
    perm = np.argsort(keys, axis=1)  # a random order of the valid slots, padding last
    col = np.arange(count)[None, :] % np.maximum(n_valid, 1)[:, None]  # wrap around small neighbourhoods
    out = np.take_along_axis(nb, np.take_along_axis(perm, col, axis=1), axis=1)
    out[n_valid == 0] = -1
    return out


def package_graphs(csr: PackageCSR, relation: PairTable, cooc: PairTable, threshold: float,
                   edges: bool = True) -> PackageSet:
    """Graphs of drug-id packages, built as evaluation builds candidate graphs (paper 4.2.1);
    with ``edges=False`` the nodes only (for models that do not read edges)."""
    indptr = np.asarray(csr.indptr, np.int64)
    ids = np.asarray(csr.indices, np.int64)
    if not edges:
        return PackageSet.nodes_only(indptr, ids)
    e = package_edges(indptr, ids, relation, cooc, threshold)
    return PackageSet(indptr, ids, e.offsets, e.src.astype(np.int64), e.dst.astype(np.int64),
                      e.rel.astype(np.int64), e.p, e.w)


def consensus_f1(csr: PackageCSR, owner: np.ndarray, alone: np.ndarray) -> np.ndarray:
    """Each candidate's mean F1 against the other candidates of the same patient.

    Args:
        csr: ``C`` candidate packages (canonical: sorted, no repeats).
        owner: ``[C]`` patient of each candidate, grouped (non-decreasing).
        alone: ``[C]`` the value to use for a candidate that is alone in its set.

    Returns:
        ``[C]`` float64.
    """
    start = np.searchsorted(owner, owner, side="left")  # first candidate of each one's set
    count = np.searchsorted(owner, owner, side="right") - start
    a = np.repeat(np.arange(len(owner)), count)  # every ordered pair of the same set
    b = np.repeat(start, count) + (np.arange(len(a)) - np.repeat(np.cumsum(count) - count, count))
    a, b = a[a != b], b[a != b]
    f1 = package_prf(gather_rows(csr, a), gather_rows(csr, b))["f1"]
    out = np.asarray(alone, np.float64).copy()
    many = count > 1
    out[many] = (np.bincount(a, weights=f1, minlength=len(owner)) / np.maximum(count - 1, 1))[many]
    return out


@dataclass
class Neighbourhood:
    """Neighbourhood negatives of the training patients (see the module docs).

    Attributes:
        packages: The training packages, rows of ``table`` (canonical CSR).
        table: ``[N, k]`` neighbours of each training row (:func:`neighbour_table`).
        record_ids: ``N`` record ids of the rows (batches name their patients by id).
        relation, cooc, threshold: What the graphs are built from.
        count: Neighbourhood negatives per patient (the last ``count`` of its
            ``negative_ratio`` slots).
        consensus: Share of a ranking target taken from the candidate's mean F1 against
            the other candidates of its set (``train.rank_consensus``, :meth:`candidates`).
    """

    packages: PackageCSR
    table: np.ndarray
    record_ids: Sequence[str]
    relation: PairTable
    cooc: PairTable
    threshold: float
    count: int
    consensus: float = 0.0
    _row: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.record_ids) != self.table.shape[0]:
            raise ValueError(f"Neighbourhood: {len(self.record_ids)} record ids for {self.table.shape[0]} rows")
        self._row = {str(r): i for i, r in enumerate(self.record_ids)}

    @classmethod
    def build(cls, index: CandidateIndex, k: int, count: int, relation: PairTable, cooc: PairTable,
              threshold: float, consensus: float = 0.0) -> "Neighbourhood":
        """From the training split's candidate index (it must hold record ids)."""
        if index.record_ids is None:
            raise ValueError("Neighbourhood.build: the candidate index has no record ids")
        return cls(PackageCSR(index.indptr, index.indices), neighbour_table(index, k), list(index.record_ids),
                   relation, cooc, threshold, count, consensus)

    def at_threshold(self, threshold: float) -> "Neighbourhood":
        """The same neighbourhoods, their graphs built at another co-occurrence threshold
        (a sweep trial's ``data.threshold``)."""
        return self if threshold == self.threshold else replace(self, threshold=threshold)

    def with_consensus(self, consensus: float) -> "Neighbourhood":
        """The same neighbourhoods with another consensus share of the ranking targets (a
        sweep trial's ``train.rank_consensus``)."""
        return self if consensus == self.consensus else replace(self, consensus=consensus)

    def rows(self, record_ids: Sequence[str]) -> np.ndarray:
        """Training rows of ``record_ids`` (``-1`` for an id outside the training split)."""
        return np.fromiter((self._row.get(str(r), -1) for r in record_ids), np.int64, count=len(record_ids))

    def extend(self, packages: PackageSet, negatives: np.ndarray, record_ids: Sequence[str],
               rng: np.random.Generator) -> tuple[PackageSet, np.ndarray, float]:
        """Replace the last ``count`` negatives of each patient by neighbourhood packages.

        Args:
            packages: The global batch's ``G`` packages (indices of ``negatives``).
            negatives: ``[B, K]`` global-batch negatives of the local patients.
            record_ids: ``B`` record ids of the local patients.
            rng: The step's generator.

        Returns:
            ``(packages', negatives', share)``: the ``G`` packages followed by the chosen
            neighbourhood packages; ``[B, K]`` indices into them; and the share of the
            ``B * K`` slots now holding a neighbourhood package (a patient without
            neighbours keeps its global-batch negatives).
        """
        b, k = negatives.shape
        count = min(self.count, k)
        if count < 1 or b == 0:
            return packages, negatives, 0.0
        chosen = sample_neighbours(self.table, self.rows(record_ids), count, rng)  # [B, count]
        use = chosen >= 0
        if not use.any():
            return packages, negatives, 0.0
        graphs = package_graphs(gather_rows(self.packages, chosen[use]), self.relation, self.cooc, self.threshold)
        out = negatives.copy()
        slots = out[:, k - count:]
        slots[use] = len(packages) + np.arange(int(use.sum()))
        out[:, k - count:] = slots
        return PackageSet.concat([packages, graphs]), out, float(use.sum()) / float(b * k)


    def candidates(self, record_ids: Sequence[str], own: PackageCSR, model: torch.nn.Module | None = None
                   ) -> CandidateBatch | None:
        """Each patient's neighbourhood as its training candidate set, with F1 targets.

        A candidate's target is its F1 against the patient's own package; with
        ``consensus`` ``beta > 0`` it is ``(1 - beta)`` times that plus ``beta`` times the
        candidate's mean F1 against the other candidates of the set
        (:func:`consensus_f1`).

        Args:
            record_ids: ``B`` record ids of the local patients.
            own: Their own packages (``B`` rows, the targets' ground truth).
            model: When it has the DPR fast path (``model.fast``), its plan is built here
                (on the CPU). A model that reads no edges (a package baseline) gets the
                candidates' nodes only.

        Returns:
            A :class:`~dpr_dist.models.ranking.CandidateBatch` of the ``[B, k]`` grid, or
            None when no patient has a neighbour.
        """
        nb = np.where((rows := self.rows(record_ids))[:, None] >= 0, self.table[np.maximum(rows, 0)], -1)
        valid = nb >= 0
        if not valid.any():
            return None
        owner, col = np.nonzero(valid)
        csr = gather_rows(self.packages, nb[valid])
        f1 = package_prf(csr, gather_rows(PackageCSR(np.asarray(own.indptr, np.int64),
                                                     np.asarray(own.indices, np.int64)), owner))["f1"]
        if self.consensus > 0:
            f1 = (1.0 - self.consensus) * f1 + self.consensus * consensus_f1(csr, owner, f1)
        target = np.zeros(nb.shape, np.float32)
        target[owner, col] = f1
        graphs = package_graphs(csr, self.relation, self.cooc, self.threshold, edges=reads_edges(model)).to_batch()
        owner_t = torch.from_numpy(owner.astype(np.int64))
        plan = model.plan(graphs, owner_t, len(rows)) if getattr(model, "fast", False) else None
        return CandidateBatch(graphs, owner_t, torch.from_numpy((owner * nb.shape[1] + col).astype(np.int64)),
                              torch.from_numpy(target), torch.from_numpy(valid), plan)
