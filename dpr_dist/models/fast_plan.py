"""Index maps of the DPR fast path, built with numpy on the CPU (:func:`build_plan`).

A :class:`FastPlan` holds, for one batch of package graphs, everything the fast path
(:mod:`dpr_dist.models.fast`) indexes with: the batch's distinct drugs, its distinct
(patient, drug) pairs (DPR-WG's contextual factor), its distinct drug pairs (DPR-AG's edge
attributes), the (pair, relation) counts of the interaction-type loss and, for the
variants whose package embedding ignores the patient, which graphs are copies of one
another. Building it also validates the batch, with the messages of
:meth:`DPR.check_graphs` and :meth:`DPR.loss`.

Built where the batch is made (before ``.to(device)``), it moves with ``plan.to(device)``
and leaves the forward pass without data-dependent shapes or host synchronisation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from dpr_dist.models.batch import check_ids

if TYPE_CHECKING:  # annotations only
    from dpr_dist.models.variants import Variant

_DENSE_KEYS = 1 << 24  # factorize through a dense table up to this key range


@dataclass
class FastPlan:
    """Index maps of one batch of package graphs for the fast path (built by :func:`build_plan`).

    ``G`` graphs, of which ``R`` representatives are embedded (``R = G`` unless identical
    packages are merged); ``N``/``E`` nodes/edges of the representatives; ``M_b`` distinct
    drugs. Fields a variant does not use are None.

    Attributes:
        num_patients: ``B``, rows of ``u``.
        group: ``1 + K`` when the graphs are in the patient-major layout of ``DPR.loss``.
        owner: ``[G]`` patient row of each graph.
        graph_rep: ``[G]`` representative of each graph (None: ``R = G``, identity).
        num_reps: ``R``.
        drugs: ``[M_b]`` global drug ids.
        node_drug: ``[N]`` local drug (row of ``drugs``) of each node.
        node_graph: ``[N]`` representative graph of each node.
        src, dst: ``[E]`` message ``src -> dst`` (node rows).
        edge_w: ``[E]`` WG initial weights.
        od_owner, od_drug: ``[U]`` the distinct (patient, local drug) pairs; ``node_od``
            ``[N]`` the pair of each node (WG context).
        pair_src, pair_dst: ``[P]`` local drugs of the distinct (``v``, ``u``) pairs;
            ``edge_pair`` ``[E]`` the pair of each edge (AG).
        in_degree: ``[N]`` float32 ``max(1, in-degree)`` of each node (the divisor of
            ``model.aggr: mean``).
        ce_pair, ce_rel, ce_count: ``[Q]`` distinct (pair, relation) among the labelled
            edges of the positive graphs, with counts; ``ce_edges`` 0-d int64 (AG CE).
    """

    num_patients: int
    group: int | None
    owner: Tensor
    graph_rep: Tensor | None
    num_reps: int
    drugs: Tensor
    node_drug: Tensor
    node_graph: Tensor
    src: Tensor
    dst: Tensor
    edge_w: Tensor | None = None
    od_owner: Tensor | None = None
    od_drug: Tensor | None = None
    node_od: Tensor | None = None
    pair_src: Tensor | None = None
    pair_dst: Tensor | None = None
    edge_pair: Tensor | None = None
    in_degree: Tensor | None = None
    ce_pair: Tensor | None = None
    ce_rel: Tensor | None = None
    ce_count: Tensor | None = None
    ce_edges: Tensor | None = None

    @property
    def num_graphs(self) -> int:
        return int(self.owner.numel())

    @property
    def num_nodes(self) -> int:
        return int(self.node_drug.numel())

    def _apply(self, fn) -> "FastPlan":
        return FastPlan(**{f.name: fn(v) if isinstance(v := getattr(self, f.name), Tensor) else v
                           for f in fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "FastPlan":
        """Copy of the plan on ``device``."""
        return self._apply(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "FastPlan":
        """Copy of the plan in page-locked memory."""
        return self._apply(lambda t: t.pin_memory())


def _factorize(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of non-negative ``keys < bound`` and each key's row among them."""
    if bound <= max(_DENSE_KEYS, 4 * keys.size):
        present = np.zeros(bound, dtype=bool)
        present[keys] = True
        uniq = np.flatnonzero(present)
        pos = np.cumsum(present) - 1
        return uniq, pos[keys]
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, inverse.ravel()


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer (uint64 -> uint64), a well-spread hash."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _segment_hash(h: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    cs = np.concatenate([np.zeros(1, np.uint64), np.cumsum(h, dtype=np.uint64)])
    return cs[ptr[1:]] - cs[ptr[:-1]]  # wraps modulo 2^64


def _ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    owner = np.repeat(np.arange(sizes.size), sizes)
    first = np.cumsum(sizes) - sizes
    return starts[owner] + np.arange(int(sizes.sum())) - first[owner]


def _same(a: np.ndarray, b: np.ndarray, seg: np.ndarray, n: int) -> np.ndarray:
    """Per segment: whether ``a == b`` on all its rows."""
    return np.bincount(seg[a != b], minlength=n) == 0


def _representatives(node_ptr, drug, edge_ptr, src_l, dst_l, wbits) -> np.ndarray:
    """``[G]`` representative graph of each graph: the first identical one (exact)."""
    g = node_ptr.size - 1
    nsz, esz = np.diff(node_ptr), np.diff(edge_ptr)
    pos = np.arange(drug.size) - np.repeat(node_ptr[:-1], nsz)
    hn = _segment_hash(_mix(drug.astype(np.uint64) * np.uint64(1 << 20) + pos.astype(np.uint64)), node_ptr)
    eh = (src_l.astype(np.uint64) << np.uint64(44)) ^ (dst_l.astype(np.uint64) << np.uint64(32)) ^ wbits
    he = _segment_hash(_mix(eh + np.uint64(0x9E3779B97F4A7C15)), edge_ptr)
    sig = _mix(hn ^ _mix(he + (nsz.astype(np.uint64) << np.uint64(32)) + esz.astype(np.uint64)))
    _, first, inverse = np.unique(sig, return_index=True, return_inverse=True)
    rep = first[inverse.ravel()]
    cand = np.flatnonzero(rep != np.arange(g))
    if cand.size:  # verify element-wise: a hash collision must never merge different graphs
        rep = rep.copy()
        r = rep[cand]
        ok = (nsz[cand] == nsz[r]) & (esz[cand] == esz[r])
        rep[cand[~ok]] = cand[~ok]
        cand, r = cand[ok], r[ok]
        nseg = np.repeat(np.arange(cand.size), nsz[cand])
        ia, ib = _ranges(node_ptr[cand], nsz[cand]), _ranges(node_ptr[r], nsz[cand])
        eseg = np.repeat(np.arange(cand.size), esz[cand])
        ja, jb = _ranges(edge_ptr[cand], esz[cand]), _ranges(edge_ptr[r], esz[cand])
        same = (_same(drug[ia], drug[ib], nseg, cand.size) & _same(src_l[ja], src_l[jb], eseg, cand.size)
                & _same(dst_l[ja], dst_l[jb], eseg, cand.size) & _same(wbits[ja], wbits[jb], eseg, cand.size))
        rep[cand[~same]] = cand[~same]
    return rep


def _check(graphs: Any, owner: Tensor, variant: "Variant", num_patients: int, num_drugs: int,
           group: int | None) -> tuple[np.ndarray, ...]:
    """Validate the batch; return ``drug [N]``, ``node_graph [N]``, ``edge_index [2, E]``,
    ``owner [G]`` (int64), ``edge_w [E]`` (float32 or None) and ``edge_rel [E]`` (or None)."""
    batch = getattr(graphs, "batch", None)
    num_graphs = 1 if batch is None else int(graphs.num_graphs)
    own = owner.detach().cpu()
    if own.dim() != 1 or own.size(0) != num_graphs:
        raise ValueError(f"DPR: owner must be [{num_graphs}] (one per graph), got {tuple(own.shape)}")
    check_ids(own, num_patients, "DPR: owner (patient row per graph)")
    drug = graphs.drug.detach().cpu()
    check_ids(drug, num_drugs, "DPR: graphs.drug (node)")
    ei = graphs.edge_index.detach().cpu().numpy().astype(np.int64, copy=False)
    n, e = drug.numel(), ei.shape[1]
    for key, needed in (("edge_w", variant.initial_weights), ("edge_rel", variant.type_loss)):
        val = getattr(graphs, key, None)
        if needed and (val is None or val.size(0) != e):
            raise ValueError(f"DPR: graphs.{key} must be [E] (one per edge) for {variant.name!r}")
    if e and (ei.min() < 0 or ei.max() >= n):
        edge = int(np.flatnonzero(((ei < 0) | (ei >= n)).any(axis=0))[0])
        raise ValueError(f"DPR: graphs.edge_index: edge {edge} names a node outside [0, {n})")
    rel = graphs.edge_rel.detach().cpu().numpy().astype(np.int64, copy=False) if variant.type_loss else None
    if rel is not None and (bad := np.flatnonzero((rel < -1) | (rel > 2))).size:
        raise ValueError(f"DPR: graphs.edge_rel: edge {int(bad[0])} is not one of -1, 0, 1, 2")
    own_np = own.numpy().astype(np.int64, copy=False)
    if group is not None:
        if num_graphs != num_patients * group:
            raise ValueError(f"DPR.loss: expected {num_patients} patients x (1 + {group - 1}) = "
                             f"{num_patients * group} graphs, got {num_graphs}")
        if not np.array_equal(own_np, np.repeat(np.arange(num_patients), group)):
            raise ValueError("DPR.loss: owner must be arange(B).repeat_interleave(1 + K) (patient-major)")
    node_graph = (np.zeros(n, np.int64) if batch is None
                  else batch.detach().cpu().numpy().astype(np.int64, copy=False))
    w = graphs.edge_w.detach().cpu().numpy().astype(np.float32, copy=False) if variant.initial_weights else None
    return drug.numpy().astype(np.int64, copy=False), node_graph, ei, own_np, w, rel


def _merge_copies(drug, node_graph, src, dst, w, num_graphs):
    """Keep one representative of each set of identical graphs (nodes and edges in order).

    Returns ``(drug, node_graph, src, dst, w)`` of the representatives (graphs renumbered
    ``0..R-1``) and ``graph_rep [G]`` (None when no two graphs are equal, or when the
    batch is not laid out graph by graph, as PyG batches are).
    """
    edge_graph = node_graph[dst]
    if num_graphs < 2 or np.any(np.diff(node_graph) < 0) or np.any(np.diff(edge_graph) < 0):
        return drug, node_graph, src, dst, w, None
    node_ptr = np.concatenate([[0], np.cumsum(np.bincount(node_graph, minlength=num_graphs))])
    edge_ptr = np.concatenate([[0], np.cumsum(np.bincount(edge_graph, minlength=num_graphs))])
    wbits = w.view(np.uint32).astype(np.uint64) if w is not None else np.zeros(src.size, np.uint64)
    local = node_ptr[edge_graph]
    rep = _representatives(node_ptr, drug, edge_ptr, src - local, dst - local, wbits)
    reps, graph_rep = np.unique(rep, return_inverse=True)
    if reps.size == num_graphs:
        return drug, node_graph, src, dst, w, None
    keep_n, keep_e = np.isin(node_graph, reps), np.isin(edge_graph, reps)
    new_id = np.cumsum(keep_n) - 1
    return (drug[keep_n], graph_rep[node_graph[keep_n]], new_id[src[keep_e]], new_id[dst[keep_e]],
            None if w is None else w[keep_e], graph_rep.ravel())


def build_plan(graphs: Any, owner: Tensor, variant: "Variant", num_patients: int, num_drugs: int,
               group: int | None = None) -> FastPlan:
    """Validate a batch of package graphs and build the fast path's index maps (CPU, numpy).

    Args:
        graphs: A PyG ``Batch`` (or one ``Data``) of package graphs
            (:mod:`dpr_dist.models.batch`); tensors on the CPU (else copied there).
        owner: ``[G]`` patient row of each graph.
        variant: The model's :class:`~dpr_dist.models.variants.Variant`.
        num_patients: ``B``.
        num_drugs: ``M``.
        group: ``1 + K`` to check the patient-major layout of ``DPR.loss`` (and build
            the interaction-type CE maps); None for scoring.

    Returns:
        The :class:`FastPlan` (CPU tensors; they may share memory with ``graphs``).

    Raises:
        ValueError: naming the field (and graph, row or edge) that is wrong, with the
            messages of :meth:`DPR.check_graphs` and :meth:`DPR.loss`.
    """
    drug_all, graph_all, ei, own, w, rel = _check(graphs, owner, variant, num_patients, num_drugs, group)
    num_graphs = own.size
    drug, node_graph, src, dst, graph_rep = drug_all, graph_all, ei[0], ei[1], None
    if not variant.has_mask:  # the package embedding ignores the patient: embed each package once
        drug, node_graph, src, dst, w, graph_rep = _merge_copies(drug, node_graph, src, dst, w, num_graphs)
    drugs, node_drug = _factorize(drug, num_drugs)
    mb = drugs.size
    t = torch.from_numpy
    plan = FastPlan(num_patients=num_patients, group=group, owner=t(own), num_reps=num_graphs,
                    graph_rep=None if graph_rep is None else t(graph_rep), drugs=t(drugs), node_drug=t(node_drug),
                    node_graph=t(node_graph), src=t(src), dst=t(dst), edge_w=None if w is None else t(w),
                    in_degree=t(np.maximum(np.bincount(dst, minlength=drug.size), 1).astype(np.float32)))
    if graph_rep is not None:
        plan.num_reps = int(graph_rep.max()) + 1
    if variant.context:  # distinct (patient, drug): a patient's packages share their masked drugs
        od, node_od = _factorize(own[node_graph] * mb + node_drug, num_patients * mb)
        plan.od_owner, plan.od_drug, plan.node_od = t(od // mb), t(od % mb), t(node_od)
    if variant.graph == "ag":  # distinct (v, u) drug pairs: e_vu depends on the drugs only
        pairs, edge_pair = _factorize(node_drug[src] * mb + node_drug[dst], mb * mb)
        plan.pair_src, plan.pair_dst, plan.edge_pair = t(pairs // mb), t(pairs % mb), t(edge_pair)
        if variant.type_loss and group is not None:  # labelled edges of the positive graphs
            use = (graph_all[ei[1]] % group == 0) & (rel != -1)
            local = np.searchsorted(drugs, drug_all)
            pair = np.searchsorted(pairs, local[ei[0][use]] * mb + local[ei[1][use]])  # all in `pairs`
            cls, cnt = np.unique(pair * 3 + rel[use], return_counts=True)
            plan.ce_pair, plan.ce_rel, plan.ce_count = t(cls // 3), t(cls % 3), t(cnt.astype(np.float32))
            plan.ce_edges = torch.tensor(int(use.sum()), dtype=torch.int64)
    return plan
