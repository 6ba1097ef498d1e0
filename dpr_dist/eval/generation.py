"""Package generation: new candidate packages from S1, L, l, R and p (paper section 6).

Existing packages cannot always meet a new patient's needs, so the paper extends the
candidate set ``S1`` (packages of the most similar training patients) with reformed
packages before the package model picks the best one:

1. ``S2`` reforms every package of ``S1``:

   * ``delete_rare``: delete the drugs that appear in a small fraction of ``S1``'s
     packages (``<= rare_support``) *and* rank low in ``l`` (``l_rank >= low_rank_l``);
   * ``add_unpopular``: add the drugs that rank low in ``L`` (``L_rank >=
     unpopular_rank_L``) and high in ``l`` (``l_rank < top_l``), i.e. drugs the NCF
     model predicts for this patient although they are not popular.

2. ``S3`` modifies every reformed package ``q`` more radically:

   * ``add_synergism``: add a drug ``d`` high in ``l`` with a synergism relation (``R``,
     either direction) to a drug of ``q``;
   * ``add_cooccurrence``: add a drug ``d`` high in ``l`` with ``p_vd > high_cooc`` for a
     drug ``v`` of ``q`` (``p_vd = num_vd / num_v``: most packages holding ``v`` hold
     ``d`` too);
   * ``delete_antagonism``: when two drugs have an antagonism relation (either
     direction) and a low co-occurrence proportion (``max(p_12, p_21) < low_cooc``),
     delete the one ranked lower in ``l``. Conflicts are resolved greedily from the best
     ranked drug down, so a drug whose only antagonist was already deleted is kept. This
     rule runs after the additions, so no package of ``S3`` holds such a pair.

3. ``S = S1 ∪ S2 ∪ S3``: identical drug sets appear once (the first of ``S1``, ``S2``,
   ``S3`` wins), ``S1`` is always kept whole, and every generated package carries the
   rule applications that produced it (``S2``'s and then ``S3``'s) so that serving can
   explain it, e.g. ``{"rule": "add_synergism", "drug": 17, "partner": 4}``.

Ranks are 0-based and 0 is best: ``l_rank[d]`` is drug ``d``'s position in the patient's
NCF list ``l`` (descending predicted score) and ``L_rank[d]`` its position in the
popularity list ``L`` (descending training frequency); :func:`ranks_from_scores` makes
both. Ties in ranks are broken by the smaller drug id. Everything is deterministic.

Example::

    L_rank = ranks_from_scores(train_drug_counts)              # [M]
    l_rank = ranks_from_scores(ncf_scores)                     # [Q, M]
    S = generate_batch(cands.packages, l_rank, L_rank, relation, cooc, GenerationConfig())
    owner, csr = flatten(S)                                    # one batched scoring call
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from dpr_dist.config import GenerationConfig
from dpr_dist.data.graphs import ANTAGONISM, SYNERGISM, UNKNOWN, PairTable, ordered_pairs
from dpr_dist.eval.package_csr import PackageCSR, packages_to_csr

@dataclass(frozen=True, eq=False)
class GeneratedPackage:
    """One package of ``S``.

    Attributes:
        drugs: Sorted, unique drug ids ``[n]`` (int64).
        origin: ``"s1"`` (an existing candidate), ``"s2"`` or ``"s3"``.
        rules: Rule applications that produced it, in order; empty for ``"s1"``. Each is
            ``{"rule": str, "drug": int}`` plus ``"partner": int`` for the S3 rules.
        source: Index (in the input ``candidates``) of the ``S1`` package it comes from.
    """

    drugs: np.ndarray
    origin: str
    rules: list[dict[str, Any]] = field(default_factory=list)
    source: int = -1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (plain ints)."""
        return {"drugs": self.drugs.tolist(), "origin": self.origin,
                "rules": [dict(r) for r in self.rules], "source": self.source}


def ranks_from_scores(scores: np.ndarray) -> np.ndarray:
    """Rank of every drug by descending score (0 = best, ties to the smaller id).

    Use it on NCF predictions for ``l_rank`` and on training drug counts for ``L_rank``.

    Args:
        scores: ``[M]`` or ``[Q, M]``; higher is better.

    Returns:
        int64 ranks of the same shape.

    Raises:
        ValueError: on NaN scores (naming the row) or a shape that is not 1-D or 2-D.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim not in (1, 2):
        raise ValueError(f"scores: expected [M] or [Q, M], got shape {s.shape}")
    nan = np.isnan(s)
    if nan.any():
        row = int(np.argwhere(nan)[0][0]) if s.ndim == 2 else 0
        raise ValueError(f"scores: NaN in row {row}")
    order = np.argsort(-s, axis=-1, kind="stable")
    ranks = np.empty(s.shape, dtype=np.int64)
    positions = np.broadcast_to(np.arange(s.shape[-1], dtype=np.int64), s.shape)
    np.put_along_axis(ranks, order, positions, axis=-1)
    return ranks


def _check_rank(rank: np.ndarray, num_drugs: int, name: str) -> np.ndarray:
    rank = np.asarray(rank)
    if rank.shape != (num_drugs,):
        raise ValueError(f"{name}: expected shape [{num_drugs}] (one rank per drug), got {rank.shape}")
    if rank.dtype.kind not in "iu":
        raise ValueError(f"{name}: ranks must be integers, got dtype {rank.dtype}")
    if num_drugs and rank.min() < 0:
        raise ValueError(f"{name}: ranks must be non-negative (drug {int(np.argmin(rank))})")
    return rank.astype(np.int64, copy=False)


def _by_rank(drugs: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """``drugs`` ordered by ascending ``rank`` (ties: smaller id)."""
    return drugs[np.lexsort((drugs, rank[drugs]))]


def _either(table: PairTable, a: np.ndarray, b: np.ndarray, default) -> tuple[np.ndarray, np.ndarray]:
    """``table[a, b]`` and ``table[b, a]`` elementwise (any equal shapes)."""
    m = table.num_drugs
    ab = table.lookup((a * m + b).reshape(-1), default).reshape(a.shape)
    ba = table.lookup((b * m + a).reshape(-1), default).reshape(a.shape)
    return ab, ba


def _first_k(mask: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` True entries of every row of ``mask`` ``[n, H]``."""
    return mask & (np.cumsum(mask, axis=1) <= k)


def _reform(x: np.ndarray, rare_low: np.ndarray, unpopular_high: np.ndarray, cfg: GenerationConfig):
    """S2 on all S1 packages at once.

    Args:
        x: ``[n, M]`` multi-hot S1 packages.
        rare_low: ``[M]`` drugs that are rare in S1 and rank low in ``l``.
        unpopular_high: ``[U]`` drugs low in ``L`` and high in ``l``, best ``l`` first.

    Returns:
        ``x2 [n, M]`` (reformed packages), ``deleted [n, M]`` and ``added [n, U]`` masks.
    """
    deleted = x & rare_low
    added = _first_k(~x[:, unpopular_high], cfg.max_add)
    x2 = x & ~rare_low
    x2[:, unpopular_high] |= added
    return x2, deleted, added


def _radical_adds(x2: np.ndarray, high_l: np.ndarray, l_rank: np.ndarray, relation: PairTable,
                  cooc: PairTable, cfg: GenerationConfig):
    """S3 additions on all reformed packages at once.

    Args:
        x2: ``[n, M]`` multi-hot reformed packages.
        high_l: ``[H]`` drugs high in ``l``, best first.

    Returns:
        ``added [n, H]`` mask, ``by_syn [n, H]`` (added by the synergism rule, else by
        co-occurrence) and ``partner [n, H]`` (the drug of the package that justified it:
        for synergism the best-ranked in ``l``, for co-occurrence the one of highest ``p_vd``).
    """
    n, h = x2.shape[0], len(high_l)
    present = _by_rank(np.flatnonzero(x2.any(axis=0)), l_rank)  # [K] partners, best first
    if h == 0 or len(present) == 0 or cfg.max_add == 0:
        empty = np.zeros((n, h), bool)
        return empty, empty, np.zeros((n, h), np.int64)
    d, v = np.meshgrid(high_l, present, indexing="ij")  # [H, K]
    r_dv, r_vd = _either(relation, d, v, UNKNOWN)
    syn = (r_dv == SYNERGISM) | (r_vd == SYNERGISM)
    p_vd = cooc.lookup((v * cooc.num_drugs + d).reshape(-1), 0.0).reshape(d.shape)
    inside = x2[:, present][:, None, :]  # [n, 1, K]
    syn_in = syn[None] & inside  # [n, H, K]
    high_in = (p_vd > cfg.high_cooc)[None] & inside
    by_syn = syn_in.any(axis=2)
    added = _first_k(~x2[:, high_l] & (by_syn | high_in.any(axis=2)), cfg.max_add)
    partner = np.where(by_syn, present[syn_in.argmax(axis=2)],
                       present[np.where(high_in, p_vd[None], -1.0).argmax(axis=2)])
    return added, by_syn, partner


def _antagonism_deletes(x3: np.ndarray, l_rank: np.ndarray, relation: PairTable, cooc: PairTable,
                        cfg: GenerationConfig) -> list[list[tuple[int, int]]]:
    """S3 deletions: per package, ``(drug, partner)`` to delete, greedily from the best ``l``.

    All within-package pairs of all packages are looked up at once; the greedy resolution
    loops only over the few pairs that conflict.
    """
    n = x3.shape[0]
    by_l = np.lexsort((np.arange(len(l_rank)), l_rank))  # drugs, best in l first
    row, col = np.nonzero(x3[:, by_l])  # row-major: each package's drugs in l order
    drugs = by_l[col]
    sizes = np.bincount(row, minlength=n)
    out: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    start = np.concatenate([[0], np.cumsum(sizes)])
    owner, i, j = ordered_pairs(start, drugs)  # local positions of all ordered pairs
    keep = i < j  # i ranks above j in l
    owner, i, j = owner[keep], start[owner[keep]] + i[keep], start[owner[keep]] + j[keep]
    if not len(owner):
        return out
    a, b = drugs[i], drugs[j]
    r_ab, r_ba = _either(relation, a, b, UNKNOWN)
    p_ab, p_ba = _either(cooc, a, b, 0.0)
    hit = ((r_ab == ANTAGONISM) | (r_ba == ANTAGONISM)) & (np.maximum(p_ab, p_ba) < cfg.low_cooc)
    # Greedy over the few conflicting pairs, by worse then better position (positions are
    # global and in l order inside a package, so a better drug's fate is already settled).
    o, better, worse = owner[hit], i[hit], j[hit]
    order = np.lexsort((better, worse))
    deleted: set[int] = set()
    for pkg, b, w in zip(o[order].tolist(), better[order].tolist(), worse[order].tolist()):
        if w not in deleted and b not in deleted:
            deleted.add(w)
            out[pkg].append((int(drugs[w]), int(drugs[b])))
    return out


def generate_packages(
    candidates: Sequence[np.ndarray],
    l_rank: np.ndarray,
    L_rank: np.ndarray,
    relation: PairTable,
    cooc: PairTable,
    cfg: GenerationConfig,
) -> list[GeneratedPackage]:
    """``S = S1 ∪ S2 ∪ S3`` for one patient (see the module docstring for the rules).

    All packages of the patient are processed together as ``[n, M]`` multi-hot masks.

    Args:
        candidates: ``S1``: the patient's candidate packages (1-D drug-id arrays, most
            similar first); order and repeated ids inside a package do not matter.
        l_rank: ``[M]`` rank of every drug in the patient's NCF list ``l`` (0 = best).
        L_rank: ``[M]`` rank of every drug by training popularity (0 = most frequent).
        relation: ``R`` as a :class:`PairTable` of int8 labels (-1 unknown, 0 none,
            1 synergism, 2 antagonism); a relation counts in either direction.
        cooc: Co-occurrence proportions ``p_vu`` as a float :class:`PairTable`.
        cfg: Thresholds.

    Returns:
        The packages of ``S``: first ``S1`` (deduplicated, in candidate order), then the
        new packages of ``S2`` and of ``S3``, capped by ``cfg.max_packages``.

    Raises:
        ValueError: on ranks of the wrong shape or type, tables of different sizes, or a
            candidate holding a drug id outside ``[0, M)`` (naming the candidate).
    """
    m = relation.num_drugs
    if cooc.num_drugs != m:
        raise ValueError(f"cooc: {cooc.num_drugs} drugs, but relation has {m}")
    l_rank = _check_rank(l_rank, m, "l_rank")
    L_rank = _check_rank(L_rank, m, "L_rank")
    csr = packages_to_csr(list(candidates), "candidates")
    too_big = np.flatnonzero(csr.indices >= m)
    if too_big.size:
        rec = int(np.searchsorted(csr.indptr, too_big[0], side="right") - 1)
        raise ValueError(f"candidates[{rec}]: drug id out of range [0, {m})")
    n = len(csr.indptr) - 1
    out: list[GeneratedPackage] = []
    if n == 0:
        return out
    x = np.zeros((n, m), bool)  # [n, M] multi-hot S1
    x[np.repeat(np.arange(n), np.diff(csr.indptr)), csr.indices] = True
    seen: set[bytes] = set()

    def emit(row: np.ndarray, origin: str, rules: list, source: int) -> None:
        drugs = np.flatnonzero(row).astype(np.int64)
        key = drugs.tobytes()
        if key not in seen and (origin == "s1" or (len(drugs) >= cfg.min_size and len(out) < cfg.max_packages)):
            seen.add(key)
            out.append(GeneratedPackage(drugs, origin, rules, source))

    for i in range(n):
        emit(x[i], "s1", [], i)

    support = x.sum(axis=0) / n  # [M] fraction of S1 packages holding each drug
    rare_low = (support > 0) & (support <= cfg.rare_support + 1e-12) & (l_rank >= cfg.low_rank_l)
    high_l = _by_rank(np.flatnonzero(l_rank < cfg.top_l), l_rank)  # [H]
    unpopular_high = high_l[L_rank[high_l] >= cfg.unpopular_rank_L]  # [U]

    x2, deleted2, added2 = _reform(x, rare_low, unpopular_high, cfg)
    added3, by_syn, partner = _radical_adds(x2, high_l, l_rank, relation, cooc, cfg)
    x3 = x2.copy()
    x3[:, high_l] |= added3
    deleted3 = _antagonism_deletes(x3, l_rank, relation, cooc, cfg)

    rules2 = [[{"rule": "delete_rare", "drug": int(d)} for d in np.flatnonzero(deleted2[i])]
              + [{"rule": "add_unpopular", "drug": int(d)} for d in unpopular_high[added2[i]]]
              for i in range(n)]
    for i in range(n):
        emit(x2[i], "s2", rules2[i], i)
    for i in range(n):
        rules = list(rules2[i])
        for k in np.flatnonzero(added3[i]):
            name = "add_synergism" if by_syn[i, k] else "add_cooccurrence"
            rules.append({"rule": name, "drug": int(high_l[k]), "partner": int(partner[i, k])})
        for drug, against in deleted3[i]:
            x3[i, drug] = False
            rules.append({"rule": "delete_antagonism", "drug": drug, "partner": against})
        emit(x3[i], "s3", rules, i)
    return out


def generate_batch(
    candidates: Sequence[Sequence[np.ndarray]],
    l_rank: np.ndarray,
    L_rank: np.ndarray,
    relation: PairTable,
    cooc: PairTable,
    cfg: GenerationConfig,
) -> list[list[GeneratedPackage]]:
    """:func:`generate_packages` for ``Q`` patients.

    Args:
        candidates: ``Q`` candidate sets (e.g. :attr:`Candidates.packages`).
        l_rank: ``[Q, M]`` NCF ranks, one row per patient.
        L_rank: ``[M]`` popularity ranks (shared).
        relation, cooc, cfg: As in :func:`generate_packages`.

    Returns:
        ``Q`` lists of packages.

    Raises:
        ValueError: as :func:`generate_packages`, prefixed with the patient's row.
    """
    l_rank = np.asarray(l_rank)
    if l_rank.ndim != 2 or l_rank.shape[0] != len(candidates):
        raise ValueError(f"l_rank: expected shape [{len(candidates)}, M], got {l_rank.shape}")
    result = []
    for row, (cands, ranks) in enumerate(zip(candidates, l_rank)):
        try:
            result.append(generate_packages(cands, ranks, L_rank, relation, cooc, cfg))
        except ValueError as err:
            raise ValueError(f"patient row {row}: {err}") from None
    return result


def flatten(generated: Sequence[Sequence[GeneratedPackage]]) -> tuple[np.ndarray, PackageCSR]:
    """All packages of all patients for one batched scoring call.

    Returns:
        ``owner`` ``[C]`` (patient row of each package) and the packages as
        :class:`PackageCSR` (``indptr`` ``[C + 1]``, ``indices`` ``[nnz]``).
    """
    sizes = [len(s) for s in generated]
    owner = np.repeat(np.arange(len(generated), dtype=np.int64), sizes)
    return owner, packages_to_csr([g.drugs for s in generated for g in s], "generated")
