"""Packages as flat arrays: cheap to slice, gather across ranks and turn into PyG batches.

A :class:`PackageSet` holds ``K`` package graphs in CSR form (node and edge offsets), the
layout of the prepared records. It is a few bytes per drug and per edge, which is what
the distributed negative sampling sends between ranks (``docs/training.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch_geometric.data import Batch

from dpr_dist.data.graphs import filter_edges


def _list_arrays(col) -> tuple[np.ndarray, np.ndarray]:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    off = arr.offsets.to_numpy().astype(np.int64)
    values = arr.values.to_numpy(zero_copy_only=False)[off[0]: off[-1]]
    return off - off[0], values


@dataclass
class PackageSet:
    """``K`` package graphs, flattened.

    Attributes:
        node_ptr: ``[K + 1]`` start of each package in ``drug``.
        drug: ``[N]`` int64 drug ids.
        edge_ptr: ``[K + 1]`` start of each package's edges.
        src, dst: ``[E]`` int64 local node positions (message ``src -> dst``).
        rel: ``[E]`` int64 relation labels (-1..2).
        p: ``[E]`` float32 co-occurrence proportions.
        w: ``[E]`` float32 DPR-WG initial weights.
    """

    node_ptr: np.ndarray
    drug: np.ndarray
    edge_ptr: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    rel: np.ndarray
    p: np.ndarray
    w: np.ndarray

    def __len__(self) -> int:
        return len(self.node_ptr) - 1

    @classmethod
    def from_table(cls, table: pa.Table, threshold: float | None = None) -> "PackageSet":
        """From prepared records; ``threshold`` drops stored edges below a raised threshold."""
        node_ptr, drug = _list_arrays(table["drug_ids"])
        edge_ptr, src = _list_arrays(table["edge_src"])
        _, dst = _list_arrays(table["edge_dst"])
        _, rel = _list_arrays(table["edge_rel"])
        _, p = _list_arrays(table["edge_p"])
        _, w = _list_arrays(table["edge_w"])
        ps = cls(node_ptr, drug.astype(np.int64), edge_ptr, src.astype(np.int64), dst.astype(np.int64),
                 rel.astype(np.int64), p.astype(np.float32), w.astype(np.float32))
        return ps if threshold is None else ps.with_threshold(threshold)

    @classmethod
    def from_lists(cls, drugs: list[np.ndarray], src: list[np.ndarray], dst: list[np.ndarray],
                   rel: list[np.ndarray], p: list[np.ndarray], w: list[np.ndarray]) -> "PackageSet":
        def cat(xs, dtype):
            return np.concatenate([np.asarray(x, dtype) for x in xs]) if xs else np.zeros(0, dtype)

        def ptr(xs):
            return np.concatenate([[0], np.cumsum([len(x) for x in xs])]).astype(np.int64)

        return cls(ptr(drugs), cat(drugs, np.int64), ptr(src), cat(src, np.int64), cat(dst, np.int64),
                   cat(rel, np.int64), cat(p, np.float32), cat(w, np.float32))

    @classmethod
    def nodes_only(cls, node_ptr: np.ndarray, drug: np.ndarray) -> "PackageSet":
        """Packages without edges, for models that never read them (the package baselines)."""
        k = len(node_ptr) - 1
        empty = np.zeros(0, np.int64)
        return cls(np.asarray(node_ptr, np.int64), np.asarray(drug, np.int64), np.zeros(k + 1, np.int64), empty,
                   empty, empty, np.zeros(0, np.float32), np.zeros(0, np.float32))

    def with_threshold(self, threshold: float) -> "PackageSet":
        """Keep labelled edges and edges with ``p > threshold`` (no rebuild)."""
        keep = filter_edges(self.rel, self.p, threshold)
        if keep.all():
            return self
        owner = np.repeat(np.arange(len(self)), np.diff(self.edge_ptr))
        counts = np.bincount(owner[keep], minlength=len(self))
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return PackageSet(self.node_ptr, self.drug, ptr, self.src[keep], self.dst[keep], self.rel[keep],
                          self.p[keep], self.w[keep])

    def take(self, index: np.ndarray) -> "PackageSet":
        """Packages ``index`` (with repeats), in that order."""
        index = np.asarray(index, dtype=np.int64)
        nsz = np.diff(self.node_ptr)[index]
        esz = np.diff(self.edge_ptr)[index]
        nidx = _ranges(self.node_ptr[index], nsz)
        eidx = _ranges(self.edge_ptr[index], esz)
        return PackageSet(np.concatenate([[0], np.cumsum(nsz)]).astype(np.int64), self.drug[nidx],
                          np.concatenate([[0], np.cumsum(esz)]).astype(np.int64), self.src[eidx], self.dst[eidx],
                          self.rel[eidx], self.p[eidx], self.w[eidx])

    @staticmethod
    def concat(parts: list["PackageSet"]) -> "PackageSet":
        def ptr(ps):
            sizes = np.concatenate([np.diff(x) for x in ps])
            return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

        return PackageSet(ptr([q.node_ptr for q in parts]), np.concatenate([q.drug for q in parts]),
                          ptr([q.edge_ptr for q in parts]), np.concatenate([q.src for q in parts]),
                          np.concatenate([q.dst for q in parts]), np.concatenate([q.rel for q in parts]),
                          np.concatenate([q.p for q in parts]), np.concatenate([q.w for q in parts]))

    def keys(self) -> np.ndarray:
        """A 64-bit hash of each package's (sorted) drug set, to recognise equal packages."""
        owner = np.repeat(np.arange(len(self)), np.diff(self.node_ptr))
        h = (self.drug.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
        out = np.zeros(len(self), dtype=np.uint64)
        np.add.at(out, owner, h)  # order-independent
        return out

    def packages(self) -> list[np.ndarray]:
        return [self.drug[self.node_ptr[i]: self.node_ptr[i + 1]] for i in range(len(self))]

    def to_batch(self) -> Batch:
        """A PyG ``Batch`` with ``drug``, ``edge_index``, ``edge_rel``, ``edge_p``, ``edge_w``."""
        k = len(self)
        nsz = np.diff(self.node_ptr)
        esz = np.diff(self.edge_ptr)
        eowner = np.repeat(np.arange(k), esz)
        shift = self.node_ptr[:-1][eowner]
        edge_index = np.stack([self.src + shift, self.dst + shift])
        return Batch(
            drug=torch.from_numpy(self.drug),
            edge_index=torch.from_numpy(edge_index),
            edge_rel=torch.from_numpy(self.rel),
            edge_p=torch.from_numpy(self.p),
            edge_w=torch.from_numpy(self.w),
            batch=torch.from_numpy(np.repeat(np.arange(k), nsz)),
            ptr=torch.from_numpy(self.node_ptr),
            num_nodes=int(self.node_ptr[-1]),
            _num_graphs=k,
        )


def _ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for each pair, vectorized."""
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(sizes)
    owner = np.repeat(np.arange(len(sizes)), sizes)
    return starts[owner] + np.arange(total) - (ends - sizes)[owner]
