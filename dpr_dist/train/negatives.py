"""Distributed negative sampling (paper eqs. 5, 15, 21; ``docs/training.md``).

The negatives of a patient are drawn from the *global* mini-batch, the union of the
batches of all ranks, not only from the rank's own shard:

* **Package models** (DPR-WG, DPR-AG, GNN): every rank all-gathers the packages of its
  local batch (drug ids and graph edges as compact arrays, :func:`gather_packages`);
  each local patient gets ``negative_ratio`` packages of the global batch whose drug set
  differs from its own (:func:`sample_negative_packages`, compared by
  :meth:`PackageSet.keys`). The rank then embeds every negative graph *under its own
  patient's condition* (the personalized mask), exactly as a candidate is scored at test
  time, so what crosses the network are packages, never embeddings computed for another
  patient.
* **NCF pre-training**: every rank all-gathers the distinct drugs of its local batch; the
  negatives of a patient's positive drug are drugs of that global pool outside the
  patient's package (:func:`sample_negative_drugs`).

The collective is injected (``all_gather``), so the samplers are unit-tested with a fake
gather and run unchanged in a plain loop (world size 1).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from dpr_dist.data.graphs import initial_weights
from dpr_dist.train.packages import PackageSet

#: ``all_gather(obj) -> [obj_rank0, obj_rank1, ...]`` (the caller's own object included).
AllGather = Callable[[Any], list]


def torch_all_gather(obj: Any) -> list:
    """``torch.distributed.all_gather_object`` when a process group is up, else ``[obj]``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def pack_packages(ps: PackageSet) -> dict[str, np.ndarray]:
    """The wire form of a :class:`PackageSet`: the smallest dtypes that hold it.

    Per package two int32 offsets, per drug an int32 id, per edge ``src``/``dst`` int16
    (local positions), ``rel`` int8 and ``p`` float32: ``8 (B + 1) + 4 N + 9 E`` bytes.
    The DPR-WG weight ``w`` is recomputed from ``rel`` and ``p`` on arrival.
    """
    return {
        "node_ptr": ps.node_ptr.astype(np.int32), "drug": ps.drug.astype(np.int32),
        "edge_ptr": ps.edge_ptr.astype(np.int32), "src": ps.src.astype(np.int16),
        "dst": ps.dst.astype(np.int16), "rel": ps.rel.astype(np.int8), "p": ps.p.astype(np.float32),
    }


def unpack_packages(d: dict[str, np.ndarray]) -> PackageSet:
    """Inverse of :func:`pack_packages`."""
    rel = d["rel"].astype(np.int64)
    p = d["p"].astype(np.float32)
    return PackageSet(d["node_ptr"].astype(np.int64), d["drug"].astype(np.int64), d["edge_ptr"].astype(np.int64),
                      d["src"].astype(np.int64), d["dst"].astype(np.int64), rel, p, initial_weights(rel, p))


def payload_bytes(d: dict[str, np.ndarray]) -> int:
    """Raw bytes of a packed payload (sum of its arrays)."""
    return int(sum(a.nbytes for a in d.values()))


@dataclass
class GlobalBatch:
    """The packages of the global mini-batch, as seen from one rank.

    Attributes:
        packages: All ranks' packages, rank 0 first (``G`` packages).
        offsets: ``[W + 1]`` first global index of each rank's packages.
        rank: This rank.
        bytes_sent: Pickled size of this rank's payload (what it contributes).
        bytes_received: Pickled size of the other ranks' payloads.
    """

    packages: PackageSet
    offsets: np.ndarray
    rank: int
    bytes_sent: int
    bytes_received: int

    def own(self) -> np.ndarray:
        """Global indices ``[B]`` of this rank's own packages."""
        return np.arange(self.offsets[self.rank], self.offsets[self.rank + 1], dtype=np.int64)

    def rank_of(self, index: np.ndarray) -> np.ndarray:
        """Rank that contributed each global index (same shape as ``index``)."""
        return np.searchsorted(self.offsets, np.asarray(index), side="right") - 1


def gather_packages(ps: PackageSet, rank: int, all_gather: AllGather = torch_all_gather) -> GlobalBatch:
    """All-gather the local batch's packages into the global batch.

    Args:
        ps: This rank's ``B_r`` packages with their graphs.
        rank: This rank (its position in the gathered list).
        all_gather: The collective (default :func:`torch_all_gather`).

    Returns:
        The :class:`GlobalBatch` (same on every rank, ``G = sum_r B_r`` packages).
    """
    payload = pack_packages(ps)
    parts = all_gather(payload)
    if not 0 <= rank < len(parts):
        raise ValueError(f"gather_packages: rank {rank} outside the {len(parts)} gathered parts")
    sizes = [pickle.dumps(p, protocol=pickle.HIGHEST_PROTOCOL).__len__() for p in parts]
    packages = PackageSet.concat([unpack_packages(p) for p in parts])
    counts = [len(p["node_ptr"]) - 1 for p in parts]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return GlobalBatch(packages, offsets, rank, sizes[rank], int(sum(sizes) - sizes[rank]))


def sample_negative_packages(keys: np.ndarray, own: np.ndarray, ratio: int, rng: np.random.Generator,
                             max_rounds: int = 8) -> np.ndarray:
    """``ratio`` negative packages per patient, uniformly among the global batch's packages
    whose drug set differs from the patient's own (with replacement).

    Args:
        keys: ``[G]`` package keys of the global batch (:meth:`PackageSet.keys`).
        own: ``[B]`` global index of each local patient's own package.
        ratio: Negatives per positive (``train.negative_ratio``).
        rng: The step's generator.
        max_rounds: Rejection rounds before the exact (per-row) fallback.

    Returns:
        ``[B, ratio]`` int64 global indices. A patient for whom every package of the
        global batch equals its own (no negative exists) gets its own index: that pair
        scores ``s - s = 0`` and contributes no gradient.
    """
    if ratio < 1:
        raise ValueError(f"negative_ratio must be >= 1, got {ratio}")
    keys = np.asarray(keys)
    own = np.asarray(own, dtype=np.int64)
    g = len(keys)
    own_keys = keys[own][:, None]
    idx = rng.integers(0, g, size=(len(own), ratio))
    bad = keys[idx] == own_keys
    for _ in range(max_rounds):
        if not bad.any():
            return idx
        idx[bad] = rng.integers(0, g, size=int(bad.sum()))
        bad = keys[idx] == own_keys
    for row in np.flatnonzero(bad.any(axis=1)):  # rare: the batch is mostly this package
        allowed = np.flatnonzero(keys != own_keys[row, 0])
        cols = np.flatnonzero(bad[row])
        idx[row, cols] = rng.choice(allowed, size=cols.size) if allowed.size else own[row]
    return idx


def negative_layout(own: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Patient-major graph order of ``DPR.loss``: own package, then its negatives. ``[B * (1 + K)]``."""
    return np.concatenate([np.asarray(own, np.int64)[:, None], negatives], axis=1).reshape(-1)


def gather_drug_pool(local_drugs: np.ndarray, all_gather: AllGather = torch_all_gather) -> tuple[np.ndarray, int]:
    """Distinct drugs of the global batch (pre-training negatives).

    Args:
        local_drugs: Drug ids of the local batch's packages (any shape, repeats allowed).

    Returns:
        ``(pool, bytes_sent)``: sorted distinct drug ids ``[U]`` of all ranks, and the
        pickled size of this rank's contribution (``4 U_r`` bytes + header).
    """
    mine = np.unique(np.asarray(local_drugs)).astype(np.int32)
    parts = all_gather(mine)
    return np.unique(np.concatenate(parts)).astype(np.int64), len(pickle.dumps(mine))


def sample_negative_drugs(pos: np.ndarray, mask: np.ndarray, pool: np.ndarray, num_drugs: int, ratio: int,
                          rng: np.random.Generator) -> np.ndarray:
    """``ratio`` negative drugs per positive drug, uniformly from ``pool`` minus the package.

    Args:
        pos: ``[B, P]`` int64 positive drugs (padded).
        mask: ``[B, P]`` bool, True on real positives.
        pool: ``[U]`` distinct candidate drugs (the global batch's drugs).
        num_drugs: ``M``; a patient whose package covers the pool falls back to all drugs.
        ratio: Negatives per positive.
        rng: The step's generator.

    Returns:
        ``[B, P, ratio]`` int64 drug ids, none in the patient's package.

    Raises:
        ValueError: when a package holds every drug of the vocabulary (no negative exists).
    """
    if ratio < 1:
        raise ValueError(f"negative_ratio must be >= 1, got {ratio}")
    pos = np.asarray(pos, dtype=np.int64)
    mask = np.asarray(mask, dtype=bool)
    b, p = pos.shape
    out = _sample_from_pool(pos, mask, np.asarray(pool, np.int64), p * ratio, rng)
    empty = out[1] == 0
    if empty.any():
        rows = np.flatnonzero(empty)
        sub, n_allowed = _sample_from_pool(pos[rows], mask[rows], np.arange(num_drugs, dtype=np.int64), p * ratio, rng)
        if (n_allowed == 0).any():
            raise ValueError(f"batch row {int(rows[n_allowed == 0][0])}: its package holds every drug; "
                             "no negative drug exists")
        out[0][rows] = sub
    return out[0].reshape(b, p, ratio)


def _sample_from_pool(pos: np.ndarray, mask: np.ndarray, pool: np.ndarray, count: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` draws per row from ``pool`` minus the row's positives; also the allowed counts."""
    b, u = len(pos), len(pool)
    member = np.zeros((b, u), dtype=bool)
    if u:
        at = np.minimum(np.searchsorted(pool, pos), u - 1)
        hit = mask & (pool[at] == pos)
        member[np.nonzero(hit)[0], at[hit]] = True
    n_allowed = u - member.sum(axis=1)
    order = np.argsort(member, axis=1, kind="stable")  # allowed pool positions first
    r = (rng.random((b, count)) * np.maximum(n_allowed, 1)[:, None]).astype(np.int64)
    picked = np.take_along_axis(order, r, axis=1) if u else np.zeros((b, count), np.int64)
    return (pool[picked] if u else picked), n_allowed
