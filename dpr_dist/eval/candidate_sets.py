"""The candidate sets of a batch of queries, and the model's pick from each (paper 5.1.1).

:meth:`CandidateIndex.query <dpr_dist.eval.candidates.CandidateIndex.query>` returns a
:class:`Candidates`: per query, up to ``k`` rows of the index's packages. A model scores
all of them in one batched call (:meth:`Candidates.flat`) and :meth:`Candidates.pick` maps
the scores back to the best package of each query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dpr_dist.eval.package_csr import PackageCSR, gather_rows


@dataclass
class Candidates:
    """Candidate sets of ``Q`` queries, up to ``k`` packages each.

    The packages themselves are not copied: they are rows ``neighbors`` of the index's
    CSR (``pkg_indptr``, ``pkg_indices``). Padding slots (fewer than ``k`` candidates
    because the index is small, the query itself was excluded, or duplicates were
    dropped) have ``neighbors == -1`` and ``similarity == -inf``; valid slots come first,
    in order of decreasing similarity.

    For batched scoring use :meth:`flat`: candidate ``c`` is the ``c``-th valid slot in
    row-major order (query by query, most similar first); :meth:`pick` maps a score per
    flat candidate back to the best package per query.

    Attributes:
        neighbors: Index rows ``[Q, k]`` int64, ``-1`` for padding.
        similarity: Cosine similarities ``[Q, k]`` float32, ``-inf`` for padding.
        pkg_indptr: Row offsets of the index's packages ``[N + 1]``.
        pkg_indices: Drug ids of the index's packages ``[nnz]``.
    """

    neighbors: np.ndarray
    similarity: np.ndarray
    pkg_indptr: np.ndarray
    pkg_indices: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """Mask ``[Q, k]`` of the slots holding a candidate."""
        return self.neighbors >= 0

    @property
    def counts(self) -> np.ndarray:
        """Number of candidates per query ``[Q]``."""
        return self.valid.sum(axis=1)

    def __len__(self) -> int:
        return self.neighbors.shape[0]

    def flat(self) -> tuple[np.ndarray, PackageCSR]:
        """All candidates of all queries, for one batched scoring call.

        Returns:
            ``owner`` ``[C]`` (query row of each candidate) and the candidates' packages
            as :class:`PackageCSR` (``indptr`` ``[C + 1]``, ``indices`` ``[nnz_C]``).
        """
        owner, _ = np.nonzero(self.valid)
        rows = self.neighbors[self.valid]
        csr = PackageCSR(self.pkg_indptr, self.pkg_indices)
        return owner.astype(np.int64), gather_rows(csr, rows)

    @property
    def packages(self) -> list[list[np.ndarray]]:
        """Per query, the candidate packages (views into the index), most similar first."""
        ip, ix = self.pkg_indptr, self.pkg_indices
        return [[ix[ip[r] : ip[r + 1]] for r in row[row >= 0]] for row in self.neighbors]

    def pick(self, scores: np.ndarray | torch.Tensor) -> tuple[np.ndarray, list[np.ndarray]]:
        """Best-scoring candidate of every query.

        Args:
            scores: One score per flat candidate ``[C]`` (order of :meth:`flat`); higher
                is better. Ties go to the more similar neighbour.

        Returns:
            ``slot`` ``[Q]`` (column in ``neighbors``, ``-1`` when a query has no
            candidate) and the picked packages (empty array for such queries).

        Raises:
            ValueError: if ``scores`` has the wrong length or contains NaN.
        """
        if isinstance(scores, torch.Tensor):
            scores = scores.detach().cpu().numpy()
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        valid = self.valid
        if scores.size != int(valid.sum()):
            raise ValueError(
                f"scores: expected {int(valid.sum())} values (one per candidate), got {scores.size}"
            )
        if np.isnan(scores).any():
            bad = np.nonzero(valid)[0][np.isnan(scores)]
            raise ValueError(f"scores: NaN for query rows {np.unique(bad)[:10].tolist()}")
        grid = np.full((len(self), max(valid.shape[1], 1)), -np.inf)
        grid[:, : valid.shape[1]][valid] = scores
        has = valid.any(axis=1)
        slot = np.where(has, grid.argmax(axis=1), -1).astype(np.int64)
        rows = np.full(len(self), -1, dtype=np.int64)
        rows[has] = self.neighbors[np.flatnonzero(has), slot[has]]
        ip, ix = self.pkg_indptr, self.pkg_indices
        empty = np.zeros(0, dtype=ix.dtype)
        picked = [ix[ip[r] : ip[r + 1]] if r >= 0 else empty for r in rows]
        return slot, picked
