"""Drug packages in CSR form: validation, multi-hot matrices and row gathers.

Packages are stored in CSR form: ``indptr`` ``[N + 1]`` and drug ids ``indices``
``[nnz]``; package ``i`` is ``indices[indptr[i]:indptr[i + 1]]``. Every function here
works on that form (:class:`PackageCSR`), so a million packages are two flat arrays and
selecting or comparing them stays vectorized.

Example::

    csr = packages_to_csr([np.array([5, 6]), np.array([7])])   # validated, int64
    sub = gather_rows(csr, np.array([1, 0]))                    # packages 1 and 0
    x = multihot(csr, num_drugs=10)                             # [2, 10] 0/1 sparse
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from scipy import sparse


class PackageCSR(NamedTuple):
    """Packages in CSR form: package ``i`` is ``indices[indptr[i]:indptr[i + 1]]``.

    Attributes:
        indptr: Row offsets ``[N + 1]``, int64, starting at 0.
        indices: Drug ids ``[nnz]``, int64, non-negative.
    """

    indptr: np.ndarray
    indices: np.ndarray


Packages = Sequence[np.ndarray] | tuple[np.ndarray, np.ndarray]


def _record_of(indptr: np.ndarray, position: int) -> int:
    """Row of the CSR entry at ``position``."""
    return int(np.searchsorted(indptr, position, side="right") - 1)


def packages_to_csr(packages: Packages, name: str = "packages") -> PackageCSR:
    """Validate packages and bring them to CSR form (order and repeats kept as given).

    Args:
        packages: Either a sequence of 1-D integer arrays (one package per record) or a
            ``tuple`` ``(indptr, indices)`` (a :class:`PackageCSR` is such a tuple).
        name: Name of the argument, used in error messages.

    Returns:
        The packages as :class:`PackageCSR` with int64 arrays.

    Raises:
        ValueError: on a malformed CSR or a drug id that is negative or not an integer,
            naming the record (its position) and the field.
    """
    if isinstance(packages, tuple) and len(packages) == 2:
        indptr = np.asarray(packages[0])
        indices = np.asarray(packages[1])
        if indptr.ndim != 1 or indices.ndim != 1 or indptr.size == 0:
            raise ValueError(f"{name}: CSR form needs 1-D indptr [N+1] and indices [nnz]")
        if indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 0):
            raise ValueError(
                f"{name}: indptr must start at 0, be non-decreasing and end at "
                f"len(indices)={indices.size}"
            )
        indptr = indptr.astype(np.int64, copy=False)
    else:
        arrays = [np.asarray(p) for p in packages]
        for i, a in enumerate(arrays):
            if a.ndim != 1:
                raise ValueError(f"{name}[{i}]: a package must be a 1-D array of drug ids")
        lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
        indptr = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        nonempty = [a for a in arrays if a.size]
        indices = np.concatenate(nonempty) if nonempty else np.zeros(0, dtype=np.int64)
    if indices.size and indices.dtype.kind not in "iu":
        if indices.dtype.kind != "f":
            raise ValueError(f"{name}: drug ids must be integers, got dtype {indices.dtype}")
        bad = np.flatnonzero(~np.isfinite(indices) | (indices != np.round(indices)))
        if bad.size:
            rec = _record_of(indptr, int(bad[0]))
            raise ValueError(f"{name}[{rec}]: drug ids must be integers")
    indices = indices.astype(np.int64, copy=False)
    neg = np.flatnonzero(indices < 0)
    if neg.size:
        rec = _record_of(indptr, int(neg[0]))
        raise ValueError(f"{name}[{rec}]: drug ids must be non-negative")
    return PackageCSR(indptr, indices)


def multihot(csr: PackageCSR, num_drugs: int) -> sparse.csr_array:
    """Binary multi-hot matrix of packages (repeated drug ids count once).

    Args:
        csr: Packages ``[N]`` in CSR form.
        num_drugs: Number of columns ``M``; every drug id must be below it.

    Returns:
        ``scipy.sparse.csr_array`` ``[N, M]`` of 0/1 float32 with sorted column indices.
    """
    n = csr.indptr.size - 1
    mat = sparse.csr_array(
        (np.ones(csr.indices.size, dtype=np.float32), csr.indices, csr.indptr),
        shape=(n, num_drugs),
    )
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat


def gather_rows(csr: PackageCSR, rows: np.ndarray) -> PackageCSR:
    """Select packages ``rows`` (``[R]`` int) from ``csr`` into a new CSR, vectorized."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = csr.indptr[rows]
    lengths = csr.indptr[rows + 1] - starts
    indptr = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    # Position j of output row r reads input entry starts[r] + j.
    offsets = np.arange(indptr[-1], dtype=np.int64) - np.repeat(indptr[:-1], lengths)
    return PackageCSR(indptr, csr.indices[np.repeat(starts, lengths) + offsets])


def package_ids(csr: PackageCSR) -> np.ndarray:
    """Id ``[N]`` per canonical package; identical packages share an id.

    Packages are grouped by length and each group is de-duplicated with one
    ``np.unique(axis=0)``, so memory stays ``O(nnz)`` and equality is exact.
    """
    lengths = np.diff(csr.indptr)
    ids = np.empty(lengths.size, dtype=np.int64)
    next_id = 0
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        if length == 0:
            ids[rows] = next_id
            next_id += 1
            continue
        block = gather_rows(csr, rows).indices.reshape(rows.size, int(length))
        _, inverse = np.unique(block, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        ids[rows] = inverse + next_id
        next_id += int(inverse.max()) + 1
    return ids
