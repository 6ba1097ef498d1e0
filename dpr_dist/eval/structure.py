"""How much a patient's package resembles other patients' packages: a model-free statistic
that compares data sets (real EMR against synthetic) on what decides NN against NCF.

A package model picks one of its neighbours' packages; NCF ranks drugs, close to a
popularity list once the patient is known. Which wins depends on the data: whether some
other patient's package is close to a patient's own (near-duplicate treatment), or
whether a fixed list of common drugs already covers most of it. :func:`package_structure`
measures both on pools of the same number of patients, so that data sets of different
size compare:

* ``popularity_f1``: F1 of the ``K`` drugs most often prescribed to the *other* patients
  of the pool (``K`` the pool's mean package size, rounded), against the record's package;
* ``random_other_f1``: mean F1 of the record's package against every record of another
  patient in the pool (what a random pick earns);
* ``best_other_f1``: the highest of those F1 (what an oracle pick among all of the pool's
  other patients earns);

averaged over the pool's records and then over ``repeats`` random pools. Records with an
empty package are left out. The ratios ``best_other_f1 / popularity_f1`` and
``random_other_f1 / popularity_f1`` are what to compare between data sets: the higher
they are, the more the data favours picking whole packages over a ranked list.

Example::

    stats = package_structure(patient_ids, packages, pool_patients=100, repeats=5, seed=0)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dpr_dist.eval.package_csr import Packages, gather_rows, multihot, packages_to_csr


def _pool_stats(patients: np.ndarray, m: np.ndarray) -> tuple[float, float, float, int]:
    """``(popularity F1, random-other F1, best-other F1, K)`` of one pool.

    Args:
        patients: ``[n]`` patient index of each record.
        m: ``[n, D]`` multi-hot packages (float64, no empty rows).
    """
    size = m.sum(1)
    k = max(1, int(round(size.mean())))
    inter = m @ m.T
    f1 = 2.0 * inter / (size[:, None] + size[None, :])
    other = patients[:, None] != patients[None, :]
    has_other = other.any(1)
    rand = np.where(other, f1, 0.0).sum(1)[has_other] / other.sum(1)[has_other]
    best = np.where(other, f1, -1.0).max(1)[has_other]
    # leave-patient-out drug counts: the pool's counts minus the patient's own records
    per_patient = np.zeros((patients.max() + 1, m.shape[1]))
    np.add.at(per_patient, patients, m)
    counts = m.sum(0)[None, :] - per_patient[patients]
    # top-K by count, ties to the lower drug id (stable sort of the negated counts)
    top = np.argsort(-counts, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(m, top, axis=1).sum(1)
    pop = 2.0 * hits / (size + k)
    return float(pop[has_other].mean()), float(rand.mean()), float(best.mean()), k


def package_structure(patient_ids: Sequence[str] | np.ndarray, packages: Packages, pool_patients: int = 100,
                      repeats: int = 5, seed: int = 0) -> dict[str, float]:
    """The statistic of the module docs over ``repeats`` random pools of ``pool_patients``.

    Args:
        patient_ids: ``[N]`` patient of each record.
        packages: ``N`` packages (drug-id arrays or an ``(indptr, indices)`` pair).
        pool_patients: Patients per pool (all of them when fewer; then one pool is enough).
        repeats: Number of pools, each drawn without replacement from the patients.
        seed: Seed of the pool draws.

    Returns:
        ``records`` (mean records per pool), ``k`` (mean ``K``), ``popularity_f1``, ``random_other_f1``,
        ``best_other_f1``, ``best_over_popularity``, ``random_over_popularity`` (the F1 are
        means over the pools) and ``pools``.

    Raises:
        ValueError: on mismatched lengths, or when no pool has two patients with a
            non-empty package.
    """
    pid = np.asarray(patient_ids).astype(str)
    csr = packages_to_csr(packages, "packages")
    if len(pid) != len(csr.indptr) - 1:
        raise ValueError(f"package_structure: {len(pid)} patient ids for {len(csr.indptr) - 1} packages")
    if pool_patients < 2 or repeats < 1:
        raise ValueError(f"package_structure: pool_patients must be >= 2 and repeats >= 1, got "
                         f"{pool_patients}, {repeats}")
    nonempty = np.flatnonzero(np.diff(csr.indptr) > 0)
    names, code = np.unique(pid[nonempty], return_inverse=True)
    if len(names) < 2:
        raise ValueError("package_structure: needs at least two patients with a non-empty package")
    num_drugs = int(csr.indices.max()) + 1
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(repeats if len(names) > pool_patients else 1):
        chosen = rng.choice(len(names), min(pool_patients, len(names)), replace=False)
        take = np.isin(code, chosen)
        sub = gather_rows(csr, nonempty[take])
        m = multihot(sub, num_drugs).toarray().astype(np.float64)
        rows.append((take.sum(), *_pool_stats(np.unique(code[take], return_inverse=True)[1], m)))
    records, pop, rand, best, k = (float(x) for x in np.asarray(rows, dtype=np.float64).mean(0))
    return {"records": records, "k": k, "popularity_f1": pop, "random_other_f1": rand,
            "best_other_f1": best, "best_over_popularity": best / pop if pop else float("nan"),
            "random_over_popularity": rand / pop if pop else float("nan"), "pools": float(len(rows))}
