"""Candidate packages from the most similar training patients (paper 5.1.1).

Every package model except NCF picks its recommendation from a *candidate set*: the drug
packages of the ``k`` (paper: 10) training patients whose pre-trained patient embeddings
are closest to the query patient by cosine similarity. :class:`CandidateIndex` holds the
training side (L2-normalized embeddings, packages in CSR form, record ids) and answers
batched queries with a chunked matrix product, so ``16k x 127k`` queries never hold more
than a bounded similarity block in memory.

Packages are stored in CSR form (:mod:`dpr_dist.eval.package_csr`). Packages are sets,
so the index stores every package sorted and without repeated drug ids. A query returns
:class:`~dpr_dist.eval.candidate_sets.Candidates` (:mod:`dpr_dist.eval.candidate_sets`).

Example::

    index = CandidateIndex(train_emb, train_packages, record_ids=train_ids)
    cands = index.query(test_emb, k=10)
    owner, (indptr, indices) = cands.flat()      # one batched scoring call
    scores = model.score(test_emb[owner], indptr, indices)   # [C]
    slot, picked = cands.pick(scores)            # best package per query
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from dpr_dist.eval.candidate_sets import Candidates
from dpr_dist.eval.package_csr import PackageCSR, Packages, multihot, package_ids, packages_to_csr

#: Default cap on the similarity block of one query chunk (float32 elements, 256 MiB).
SIM_BLOCK_ELEMENTS = 1 << 26


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, p=2.0, dim=1, eps=1e-12)


class CandidateIndex:
    """Training patients' normalized embeddings, their packages and record ids.

    Args:
        embeddings: Pre-trained patient embeddings ``[N, D]``; stored L2-normalized as
            float32 (an all-zero row stays zero and has similarity 0 to everything).
        packages: ``N`` packages, as a sequence of drug-id arrays or a ``(indptr,
            indices)`` tuple; stored sorted and without repeated drug ids.
        record_ids: Optional ``N`` record identifiers (returned by :meth:`ids`, used in
            error messages).

    Raises:
        ValueError: on mismatched lengths, non-finite embeddings or bad drug ids,
            naming the record.
    """

    FILENAME = "candidate_index.npz"

    def __init__(
        self,
        embeddings: np.ndarray | torch.Tensor,
        packages: Packages,
        record_ids: Sequence[str] | None = None,
    ) -> None:
        emb = torch.as_tensor(embeddings).detach().to(device="cpu", dtype=torch.float32)
        if emb.ndim != 2:
            raise ValueError(f"embeddings: expected a 2-D array [N, D], got {tuple(emb.shape)}")
        n = emb.shape[0]
        ids = None if record_ids is None else np.asarray([str(r) for r in record_ids], dtype=str)
        if ids is not None and ids.size != n:
            raise ValueError(f"record_ids: expected {n} ids (one per embedding), got {ids.size}")
        bad = torch.nonzero(~torch.isfinite(emb).all(dim=1)).reshape(-1)
        if bad.numel():
            row = int(bad[0])
            who = f"record {str(ids[row])!r}" if ids is not None else f"row {row}"
            raise ValueError(f"embeddings: non-finite value in {who}")
        csr = packages_to_csr(packages, "packages")
        if csr.indptr.size - 1 != n:
            raise ValueError(
                f"packages: expected {n} packages (one per embedding), got {csr.indptr.size - 1}"
            )
        num_drugs = int(csr.indices.max()) + 1 if csr.indices.size else 0
        canon = multihot(csr, num_drugs)
        self._set(_normalize(emb), canon.indptr, canon.indices, ids)

    def _set(
        self, emb: torch.Tensor, indptr: np.ndarray, indices: np.ndarray, ids: np.ndarray | None
    ) -> None:
        """Store already normalized embeddings and canonical (sorted, unique) packages."""
        self.embeddings: torch.Tensor = emb.contiguous()
        self.indptr: np.ndarray = np.asarray(indptr).astype(np.int64)
        self.indices: np.ndarray = np.asarray(indices).astype(np.int64)
        self.record_ids: np.ndarray | None = ids
        self.package_ids: np.ndarray = package_ids(PackageCSR(self.indptr, self.indices))

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    @property
    def dim(self) -> int:
        """Embedding size ``D``."""
        return self.embeddings.shape[1]

    def package(self, row: int) -> np.ndarray:
        """Package of index row ``row`` (sorted drug ids)."""
        return self.indices[self.indptr[row] : self.indptr[row + 1]]

    def ids(self, rows: np.ndarray) -> np.ndarray:
        """Record ids of index rows (``""`` for ``-1`` padding)."""
        if self.record_ids is None:
            raise ValueError("this index was built without record_ids")
        rows = np.asarray(rows)
        out = self.record_ids[np.maximum(rows, 0)]
        return np.where(rows >= 0, out, "")

    def query(
        self,
        u: torch.Tensor | np.ndarray,
        k: int = 10,
        exclude: np.ndarray | None = None,
        dedupe: bool = True,
        chunk: int | None = None,
    ) -> Candidates:
        """Candidate sets: packages of the ``k`` most cosine-similar index rows.

        Args:
            u: Query patient embeddings ``[Q, D]`` (normalized here).
            k: Number of nearest neighbours (paper: 10).
            exclude: Index row to leave out per query ``[Q]`` (``-1`` = none); use it when
                the queries are themselves index rows (training-time validation).
            dedupe: Drop a neighbour whose package equals that of a more similar
                neighbour (keeps the most similar occurrence). The set of candidate
                packages is unchanged; only repeats go (to padding at the end).
            chunk: Query rows per similarity block ``[chunk, N]``; ``None`` picks the
                largest chunk (at most 4096) keeping the block under
                ``SIM_BLOCK_ELEMENTS`` floats.

        Returns:
            :class:`Candidates` with ``neighbors`` / ``similarity`` of shape ``[Q, k]``.

        Raises:
            ValueError: on a wrong shape, a non-finite query row or an out-of-range
                ``exclude`` entry, naming the query row.
        """
        if k < 1:
            raise ValueError(f"k: must be at least 1, got {k}")
        q = torch.as_tensor(u).detach().to(device="cpu", dtype=torch.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"u: expected shape [Q, {self.dim}], got {tuple(q.shape)}")
        bad = torch.nonzero(~torch.isfinite(q).all(dim=1)).reshape(-1)
        if bad.numel():
            raise ValueError(f"u: non-finite value in query row {int(bad[0])}")
        nq, n = q.shape[0], len(self)
        if exclude is not None:
            exclude = np.asarray(exclude, dtype=np.int64).reshape(-1)
            if exclude.size != nq:
                raise ValueError(
                    f"exclude: expected {nq} entries (one per query), got {exclude.size}"
                )
            out_of_range = np.flatnonzero((exclude < -1) | (exclude >= n))
            if out_of_range.size:
                row = int(out_of_range[0])
                raise ValueError(f"exclude: query row {row} names an index row outside [-1, {n})")
        if chunk is None:
            chunk = int(min(4096, max(1, SIM_BLOCK_ELEMENTS // max(n, 1))))
        kk = min(k, n)
        neighbors = np.full((nq, k), -1, dtype=np.int64)
        similarity = np.full((nq, k), -np.inf, dtype=np.float32)
        q = _normalize(q)
        for start in range(0, nq, chunk):
            stop = min(start + chunk, nq)
            sims = q[start:stop] @ self.embeddings.T  # [B, N]
            if exclude is not None:
                ex = torch.from_numpy(exclude[start:stop])
                rows = torch.nonzero(ex >= 0).reshape(-1)
                sims[rows, ex[rows]] = -torch.inf
            if kk:
                val, idx = torch.topk(sims, kk, dim=1, largest=True, sorted=True)
                similarity[start:stop, :kk] = val.numpy()
                neighbors[start:stop, :kk] = idx.numpy()
        neighbors[np.isneginf(similarity)] = -1
        if dedupe:
            neighbors, similarity = self._dedupe(neighbors, similarity)
        return Candidates(neighbors, similarity, self.indptr, self.indices)

    def _dedupe(
        self, neighbors: np.ndarray, similarity: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Drop repeated packages per query row and move padding to the end."""
        valid = neighbors >= 0
        pid = np.where(valid, self.package_ids[np.maximum(neighbors, 0)], -1)
        k = pid.shape[1]
        earlier = np.tril(np.ones((k, k), dtype=bool), k=-1)  # earlier[i, j]: j < i
        dup = ((pid[:, :, None] == pid[:, None, :]) & earlier).any(axis=2) & valid
        keep = valid & ~dup
        order = np.argsort(~keep, axis=1, kind="stable")
        neighbors = np.where(keep, neighbors, -1)
        similarity = np.where(keep, similarity, np.float32(-np.inf)).astype(np.float32)
        return np.take_along_axis(neighbors, order, 1), np.take_along_axis(similarity, order, 1)

    def save(self, path: str | Path) -> Path:
        """Write the index to directory ``path`` (created) as ``candidate_index.npz``.

        Returns:
            The file written.
        """
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / self.FILENAME
        arrays = {
            "embeddings": self.embeddings.numpy(),
            "indptr": self.indptr,
            "indices": self.indices,
        }
        if self.record_ids is not None:
            arrays["record_ids"] = self.record_ids
        with open(target, "wb") as fh:
            np.savez(fh, **arrays)
        return target

    @classmethod
    def load(cls, path: str | Path) -> "CandidateIndex":
        """Read an index written by :meth:`save` (``path`` is the directory or the file)."""
        target = Path(path)
        if target.is_dir():
            target = target / cls.FILENAME
        if not target.is_file():
            raise FileNotFoundError(f"no candidate index at {target}")
        with np.load(target, allow_pickle=False) as data:
            emb = torch.from_numpy(data["embeddings"].astype(np.float32))
            indptr, indices = data["indptr"], data["indices"]
            ids = data["record_ids"] if "record_ids" in data.files else None
        n = emb.shape[0]
        if emb.ndim != 2 or indptr.size != n + 1 or (ids is not None and ids.size != n):
            raise ValueError(f"{target}: inconsistent sizes of embeddings, packages, record_ids")
        index = cls.__new__(cls)
        index._set(emb, indptr, indices, ids)
        return index


def brute_force_topk(
    index_embeddings: np.ndarray,
    queries: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference cosine top-``k`` in plain numpy (for tests; ``O(Q N)`` memory).

    Args:
        index_embeddings: ``[N, D]``.
        queries: ``[Q, D]``.
        k: Neighbours per query.
        exclude: Index row to leave out per query ``[Q]`` (``-1`` = none).

    Returns:
        ``neighbors`` ``[Q, k]`` (``-1`` padding) and ``similarity`` ``[Q, k]``
        (``-inf`` padding), most similar first.
    """
    a = np.asarray(index_embeddings, dtype=np.float64)
    b = np.asarray(queries, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    sims = b @ a.T
    if exclude is not None:
        rows = np.flatnonzero(np.asarray(exclude) >= 0)
        sims[rows, np.asarray(exclude)[rows]] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(sims, order, 1)
    pad = k - order.shape[1]
    order = np.pad(order, ((0, 0), (0, pad)), constant_values=-1)
    top = np.pad(top, ((0, 0), (0, pad)), constant_values=-np.inf)
    order[np.isneginf(top)] = -1
    return order, top
