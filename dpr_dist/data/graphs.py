"""Package graphs of a batch of records (paper 4.2.1, 4.3.1). Pure NumPy, no Ray.

A package is a list of drug ids. Its graph has an edge ``v -> u`` for an ordered pair of
its drugs when

1. the pair is labelled in the relation matrix ``R`` (``R[v, u] != -1``), or
2. the co-occurrence proportion ``p_vu = num_vu / num_v`` exceeds the threshold,

and DPR-WG's initial edge weight is ``1`` for synergism, ``-1`` for antagonism and ``p_vu``
otherwise. Edges keep their ``p`` so that a later run can raise the threshold without
rebuilding (:func:`filter_edges`).

Sparse matrices over drug pairs are stored as sorted ``int64`` keys ``v * M + u`` with a
value array; lookups are binary searches, so memory grows with the number of labelled or
co-occurring pairs, not with ``M^2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNKNOWN, NONE, SYNERGISM, ANTAGONISM = -1, 0, 1, 2


@dataclass(frozen=True)
class PairTable:
    """A sparse ``M x M`` matrix over ordered drug pairs: sorted keys ``v * M + u``."""

    num_drugs: int
    keys: np.ndarray  # [nnz] int64, sorted, unique
    values: np.ndarray  # [nnz]

    def lookup(self, keys: np.ndarray, default) -> np.ndarray:
        """Values at ``keys`` (``default`` where absent). Shape ``[K] -> [K]``."""
        keys = np.asarray(keys, dtype=np.int64)
        out = np.full(keys.shape, default, dtype=self.values.dtype)
        if len(self.keys) == 0 or len(keys) == 0:
            return out
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, len(self.keys) - 1)
        hit = self.keys[pos] == keys
        out[hit] = self.values[pos[hit]]
        return out

    def dense(self) -> np.ndarray:
        """Dense ``[M, M]`` copy (for small ``M`` or tests)."""
        fill = -1 if np.issubdtype(self.values.dtype, np.integer) else 0
        out = np.full((self.num_drugs, self.num_drugs), fill, dtype=self.values.dtype)
        out.reshape(-1)[self.keys] = self.values
        return out


def relation_table(src: np.ndarray, dst: np.ndarray, label: np.ndarray, num_drugs: int) -> tuple[PairTable, int]:
    """The relation matrix ``R`` from labelled ordered pairs.

    Conflicting labels for the same ordered pair resolve to the highest code, so that
    antagonism (2) wins over synergism (1) over no interaction (0): a warning is never lost.

    Returns:
        ``(R, conflicts)``, the number of ordered pairs that had conflicting labels.
    """
    keys = np.asarray(src, np.int64) * num_drugs + np.asarray(dst, np.int64)
    label = np.asarray(label, np.int8)
    order = np.lexsort((-label.astype(np.int16), keys))
    keys, label = keys[order], label[order]
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    uniq_keys = keys[first]
    uniq_labels = label[first]
    # number of pairs whose rows disagree
    starts = np.flatnonzero(first)
    mins = np.minimum.reduceat(label, starts) if len(label) else label
    conflicts = int(np.sum(mins != uniq_labels))
    return PairTable(num_drugs, uniq_keys, uniq_labels), conflicts


def ordered_pairs(offsets: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs ``(a, b)``, ``a != b``, of positions inside each package.

    Args:
        offsets: ``[B + 1]`` start of each package in ``ids``.
        ids: ``[nnz]`` drug ids.

    Returns:
        ``(owner, a, b)``: ``[P]`` package of each pair and the local positions of its
        source and target, packages in order, sources then targets ascending.
    """
    sizes = np.diff(offsets).astype(np.int64)
    sq = sizes * sizes
    total = int(sq.sum())
    owner = np.repeat(np.arange(len(sizes)), sq)
    start = np.concatenate([[0], np.cumsum(sq)[:-1]]) if len(sizes) else np.zeros(0, np.int64)
    t = np.arange(total, dtype=np.int64) - start[owner]
    n = sizes[owner]
    a, b = t // np.maximum(n, 1), t % np.maximum(n, 1)
    keep = a != b
    return owner[keep], a[keep], b[keep]


def pair_counts(offsets: np.ndarray, ids: np.ndarray, num_drugs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Co-occurrence counts of one batch of packages (the map side of the aggregation).

    Returns:
        ``(item_counts [M], keys [K], counts [K])``: packages containing each drug, and the
        number of packages containing each ordered pair ``key = i * M + j``.
    """
    item = np.bincount(ids, minlength=num_drugs).astype(np.int64)
    owner, a, b = ordered_pairs(offsets, ids)
    base = offsets[:-1][owner]
    keys = ids[base + a].astype(np.int64) * num_drugs + ids[base + b]
    uniq, counts = np.unique(keys, return_counts=True)
    return item, uniq, counts.astype(np.int64)


def merge_counts(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], num_drugs: int):
    """Reduce side of the co-occurrence aggregation: sum partial counts."""
    item = np.zeros(num_drugs, np.int64)
    for p in parts:
        item += p[0]
    keys = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    counts = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64)
    uniq, inv = np.unique(keys, return_inverse=True)
    summed = np.bincount(inv, weights=counts, minlength=len(uniq)).astype(np.int64)
    return item, uniq, summed


def cooccurrence_table(item: np.ndarray, keys: np.ndarray, counts: np.ndarray, num_drugs: int) -> PairTable:
    """Co-occurrence proportions ``p_ij = num_ij / num_i`` as a :class:`PairTable`."""
    src = keys // num_drugs
    p = counts / np.maximum(item[src], 1)
    return PairTable(num_drugs, keys.astype(np.int64), p.astype(np.float32))


def initial_weights(rel: np.ndarray, p: np.ndarray) -> np.ndarray:
    """DPR-WG initial edge weight (4.3.1): 1 for synergism, -1 for antagonism, else ``p``."""
    w = p.astype(np.float32).copy()
    w[rel == SYNERGISM] = 1.0
    w[rel == ANTAGONISM] = -1.0
    return w


@dataclass
class PackageEdges:
    """Edges of a batch of package graphs, flattened; ``offsets`` split them per record."""

    offsets: np.ndarray  # [B + 1]
    src: np.ndarray  # [E] local position of v (message source)
    dst: np.ndarray  # [E] local position of u (message target)
    rel: np.ndarray  # [E] int8 R[v, u]
    p: np.ndarray  # [E] float32 p_vu
    w: np.ndarray  # [E] float32 DPR-WG initial weight


def package_edges(offsets: np.ndarray, ids: np.ndarray, relation: PairTable, cooc: PairTable,
                  threshold: float) -> PackageEdges:
    """Build the package graphs of a batch (both criteria of 4.2.1).

    Args:
        offsets: ``[B + 1]`` package starts in ``ids``.
        ids: ``[nnz]`` drug ids.
        relation: ``R`` as a :class:`PairTable` of int8 labels.
        cooc: ``p`` as a :class:`PairTable` of float32 proportions.
        threshold: Edges of unlabelled pairs need ``p > threshold``.
    """
    num_drugs = relation.num_drugs
    owner, a, b = ordered_pairs(offsets, ids)
    base = offsets[:-1][owner]
    keys = ids[base + a].astype(np.int64) * num_drugs + ids[base + b]
    rel = relation.lookup(keys, UNKNOWN).astype(np.int8)
    p = cooc.lookup(keys, 0.0).astype(np.float32)
    keep = (rel != UNKNOWN) | (p > threshold)
    owner = owner[keep]
    counts = np.bincount(owner, minlength=len(offsets) - 1)
    edge_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    rel, p = rel[keep], p[keep]
    return PackageEdges(edge_offsets, a[keep].astype(np.int16), b[keep].astype(np.int16), rel, p,
                        initial_weights(rel, p))


def filter_edges(rel: np.ndarray, p: np.ndarray, threshold: float) -> np.ndarray:
    """Mask of stored edges that survive a higher threshold (no rebuild needed)."""
    return (np.asarray(rel) != UNKNOWN) | (np.asarray(p) > threshold)
