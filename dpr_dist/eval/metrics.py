"""Package metrics (paper 5.1.1): precision, recall, F1, Jaccard, antagonism rate, ceiling.

All metrics treat a package as a *set* of drug ids: repeated ids in a package count once.
Per-record metrics are computed at once for all records with sparse multi-hot matrices
(``scipy.sparse``), never with per-record Python sets.

Conventions for empty packages (every ``0 / 0`` is 0, so an empty package never earns
credit):

* precision ``|P & T| / |P|`` is 0 when the prediction ``P`` is empty;
* recall ``|P & T| / |T|`` is 0 when the truth ``T`` is empty;
* F1 ``2 p r / (p + r)`` is 0 when ``p + r == 0`` (in particular with no overlap);
* Jaccard ``|P & T| / |P | T|`` is 0 when both are empty;
* an antagonism rate over packages without any drug pair is 0.

Example::

    per_record = package_prf(pred, true)             # dict of [Q] arrays
    ceiling = oracle_ceiling(candidates, true)       # [Q]
    report = summarize(pred, true, relation, ceiling)
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse

from dpr_dist.eval.candidate_sets import Candidates
from dpr_dist.eval.package_csr import PackageCSR, Packages, multihot, packages_to_csr

#: Label code of antagonism in the drug relation matrix (-1 unknown, 0 none, 1 synergism).
ANTAGONISM = 2

#: Cap on the rows x drugs elements of one block of :func:`antagonism_rate`.
_PAIR_BLOCK_ELEMENTS = 1 << 24


def _num_drugs(*csrs: PackageCSR) -> int:
    return max((int(c.indices.max()) + 1 for c in csrs if c.indices.size), default=0)


def _prf(inter: np.ndarray, n_pred: np.ndarray, n_true: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and Jaccard from set sizes (all ``[R]``), 0/0 -> 0."""
    inter = inter.astype(np.float64)
    n_pred = n_pred.astype(np.float64)
    n_true = n_true.astype(np.float64)
    union = n_pred + n_true - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, inter / n_pred, 0.0)
        recall = np.where(n_true > 0, inter / n_true, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        jaccard = np.where(union > 0, inter / union, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "jaccard": jaccard}


def _row_sums(mat: sparse.csr_array) -> np.ndarray:
    return np.asarray(mat.sum(axis=1)).reshape(-1)


def package_prf(pred: Packages, true: Packages) -> dict[str, np.ndarray]:
    """Per-record precision, recall, F1 and Jaccard of predicted against true packages.

    Args:
        pred: ``R`` recommended packages (drug-id arrays, or a ``(indptr, indices)``
            tuple).
        true: ``R`` ground-truth packages, same forms.

    Returns:
        Dict with float64 arrays ``[R]`` under ``precision``, ``recall``, ``f1`` and
        ``jaccard`` (conventions for empty packages in the module docstring).

    Raises:
        ValueError: if the lengths differ or a drug id is invalid (naming the record).
    """
    p = packages_to_csr(pred, "pred")
    t = packages_to_csr(true, "true")
    if p.indptr.size != t.indptr.size:
        raise ValueError(f"pred has {p.indptr.size - 1} packages but true has {t.indptr.size - 1}")
    m = _num_drugs(p, t)
    pm, tm = multihot(p, m), multihot(t, m)
    inter = _row_sums(pm.multiply(tm))
    return _prf(inter, np.diff(pm.indptr), np.diff(tm.indptr))


def oracle_ceiling(candidates: Candidates, true: Packages) -> np.ndarray:
    """Best F1 any pick from each candidate set could reach (an oracle pick).

    Args:
        candidates: Candidate sets of ``Q`` queries.
        true: ``Q`` ground-truth packages.

    Returns:
        Float64 ``[Q]``: per query, the highest F1 of a candidate package against the
        true package (0 for a query without candidates).
    """
    t = packages_to_csr(true, "true")
    if t.indptr.size - 1 != len(candidates):
        raise ValueError(
            f"true has {t.indptr.size - 1} packages but there are {len(candidates)} candidate sets"
        )
    owner, c = candidates.flat()
    m = _num_drugs(c, t)
    cm = multihot(c, m)
    tm = multihot(t, m)[owner]
    f1 = _prf(_row_sums(cm.multiply(tm)), np.diff(cm.indptr), np.diff(tm.indptr))["f1"]
    valid = candidates.valid
    grid = np.zeros((len(candidates), max(valid.shape[1], 1)))
    grid[:, : valid.shape[1]][valid] = f1
    return grid.max(axis=1)


def _antagonism_matrix(relation: np.ndarray | torch.Tensor) -> sparse.csr_array:
    if isinstance(relation, torch.Tensor):
        relation = relation.detach().cpu().numpy()
    rel = np.asarray(relation)
    if rel.ndim != 2 or rel.shape[0] != rel.shape[1]:
        raise ValueError(f"relation: expected a square matrix [M, M], got shape {rel.shape}")
    anta = rel == ANTAGONISM
    np.fill_diagonal(anta, False)
    return sparse.csr_array(anta.astype(np.float32))


def antagonism_rate(packages: Packages, relation: np.ndarray | torch.Tensor) -> float:
    """Pooled share of ordered drug pairs in the packages that ``relation`` labels antagonism.

    Counts, over all packages, the ordered pairs ``(a, b)`` with ``a != b`` (each drug
    once per package) and ``relation[a, b] == 2``, divided by all such ordered pairs, as
    the DDI rate of the medication-recommendation literature.

    Args:
        packages: ``R`` packages (drug-id arrays or a ``(indptr, indices)`` tuple).
        relation: Drug relation matrix ``[M, M]`` (-1 unknown, 0 none, 1 synergism,
            2 antagonism); only ordered entries are read, so it may be asymmetric.

    Returns:
        The rate in ``[0, 1]``; 0 when no package has two drugs.

    Raises:
        ValueError: on a non-square relation or a drug id ``>= M`` (naming the record).
    """
    anta = _antagonism_matrix(relation)
    m = anta.shape[0]
    csr = packages_to_csr(packages, "packages")
    over = np.flatnonzero(csr.indices >= m)
    if over.size:
        rec = int(np.searchsorted(csr.indptr, over[0], side="right") - 1)
        raise ValueError(f"packages[{rec}]: drug id outside the relation matrix ({m} drugs)")
    x = multihot(csr, m)
    sizes = np.diff(x.indptr).astype(np.int64)
    pairs = int((sizes * (sizes - 1)).sum())
    if pairs == 0:
        return 0.0
    block = max(1, _PAIR_BLOCK_ELEMENTS // max(m, 1))
    hits = 0.0
    for start in range(0, x.shape[0], block):
        xb = x[start : start + block]
        hits += float((xb @ anta).multiply(xb).sum())
    return hits / pairs


def topk_drugs(
    scores: torch.Tensor | np.ndarray,
    k: int,
    exclude: torch.Tensor | np.ndarray | None = None,
) -> list[np.ndarray]:
    """NCF's package: the ``k`` highest-scoring drugs of every patient.

    Args:
        scores: Drug scores ``[Q, M]``.
        k: Package size (paper: the average training package size, see
            :func:`mean_package_size`); clipped to ``M``.
        exclude: Optional boolean mask ``[M]`` or ``[Q, M]``; ``True`` drugs are never
            recommended (a row may then get fewer than ``k`` drugs).

    Returns:
        ``Q`` int64 arrays of drug ids, highest score first.

    Raises:
        ValueError: on a negative ``k``, a wrong mask shape or NaN scores (naming the row).
    """
    s = torch.as_tensor(scores).detach().to(device="cpu", dtype=torch.float32)
    if s.ndim != 2:
        raise ValueError(f"scores: expected shape [Q, M], got {tuple(s.shape)}")
    if k < 0:
        raise ValueError(f"k: must be non-negative, got {k}")
    nan_rows = torch.nonzero(torch.isnan(s).any(dim=1)).reshape(-1)
    if nan_rows.numel():
        raise ValueError(f"scores: NaN in row {int(nan_rows[0])}")
    allowed = torch.ones_like(s, dtype=torch.bool)
    if exclude is not None:
        ex = torch.as_tensor(exclude).to(device="cpu", dtype=torch.bool)
        if ex.shape not in (s.shape[1:], s.shape):
            raise ValueError(
                f"exclude: expected shape [{s.shape[1]}] or {list(s.shape)}, got {list(ex.shape)}"
            )
        allowed = ~ex.expand_as(s)
        s = s.masked_fill(~allowed, -torch.inf)
    kk = min(k, s.shape[1])
    _, idx = torch.topk(s, kk, dim=1, largest=True, sorted=True)
    keep = torch.gather(allowed, 1, idx).numpy()
    idx_np = idx.numpy().astype(np.int64)
    return [row[mask] for row, mask in zip(idx_np, keep)]


def mean_package_size(packages: Packages) -> int:
    """Average number of distinct drugs per package, rounded (at least 1): NCF's ``K``."""
    csr = packages_to_csr(packages, "packages")
    n = csr.indptr.size - 1
    if n == 0:
        raise ValueError("packages: empty, cannot take an average size")
    sizes = np.diff(multihot(csr, _num_drugs(csr)).indptr)
    return max(1, int(np.rint(sizes.mean())))


def summarize(
    pred: Packages,
    true: Packages,
    relation: np.ndarray | torch.Tensor,
    ceiling: np.ndarray | None = None,
) -> dict[str, float | int | None]:
    """Averaged metrics of one model on ``R`` records.

    Args:
        pred: ``R`` recommended packages.
        true: ``R`` ground-truth packages.
        relation: Drug relation matrix ``[M, M]`` for the antagonism rates.
        ceiling: Optional per-record oracle F1 ``[R]`` from :func:`oracle_ceiling`.

    Returns:
        Dict with the means ``precision``, ``recall``, ``f1``, ``jaccard``; the pooled
        ``antagonism_rate`` of ``pred`` and ``true_antagonism_rate`` of ``true``;
        ``ceiling_f1`` (mean oracle F1) and ``f1_of_ceiling`` (``f1 / ceiling_f1``),
        both ``None`` without ``ceiling`` (``f1_of_ceiling`` also when the ceiling is 0);
        and ``n`` (records). Plain Python numbers, ready for JSON.

    Raises:
        ValueError: on no records or mismatched lengths.
    """
    per = package_prf(pred, true)
    n = int(per["f1"].size)
    if n == 0:
        raise ValueError("no records to evaluate")
    keys = ("precision", "recall", "f1", "jaccard")
    out: dict[str, float | int | None] = {key: float(per[key].mean()) for key in keys}
    out["antagonism_rate"] = antagonism_rate(pred, relation)
    out["true_antagonism_rate"] = antagonism_rate(true, relation)
    out["ceiling_f1"] = None
    out["f1_of_ceiling"] = None
    if ceiling is not None:
        c = np.asarray(ceiling, dtype=np.float64).reshape(-1)
        if c.size != n:
            raise ValueError(f"ceiling: expected {n} values (one per record), got {c.size}")
        out["ceiling_f1"] = float(c.mean())
        if out["ceiling_f1"] > 0:
            out["f1_of_ceiling"] = out["f1"] / out["ceiling_f1"]
    out["n"] = n
    return out
