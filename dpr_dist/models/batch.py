"""What the models eat: patient batches and package graphs.

A model call takes a :class:`PatientBatch` (the patients' descriptions, paper 4.1) and,
for the package models, a :class:`torch_geometric.data.Batch` of package graphs (paper
4.2.1) with these attributes per graph:

* ``drug`` ``[N]`` int64: global drug id of each node (features come from the model's
  drug embedding),
* ``edge_index`` ``[2, E]`` int64: row 0 the source ``v``, row 1 the target ``u``;
  the message of edge ``e_vu`` flows ``v -> u``,
* ``edge_rel`` ``[E]`` int64: ``R_vu`` = -1 unknown, 0 no interaction, 1 synergism,
  2 antagonism,
* ``edge_p`` ``[E]`` float32: co-occurrence proportion ``p_vu``,
* ``edge_w`` ``[E]`` float32: initial DPR-WG weight (1 if ``R_vu = 1``, -1 if
  ``R_vu = 2``, ``p_vu`` otherwise; paper 4.3.1).

A separate ``owner`` tensor ``[G]`` int64 names the row of the :class:`PatientBatch`
under which each graph is scored (scoring is personalized).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

#: Values of ``edge_rel`` / the relation matrix.
REL_UNKNOWN, REL_NONE, REL_SYNERGISM, REL_ANTAGONISM = -1, 0, 1, 2


@dataclass
class PatientBatch:
    """A mini-batch of patient descriptions (paper 4.1).

    Attributes:
        doc: ``[B, V_doc]`` float32 multi-hot disease document ``W`` (eq. 1).
        note: ``[B, L]`` int64 character ids of the admission note ``T`` (eq. 2),
            0 = padding; ``L`` may be 0 when no record has a note.
        note_len: ``[B]`` int64 note lengths, 0 = no note.
    """

    doc: Tensor
    note: Tensor
    note_len: Tensor

    def __post_init__(self) -> None:
        if self.doc.dim() != 2:
            raise ValueError(f"PatientBatch.doc: expected [B, V_doc], got shape {tuple(self.doc.shape)}")
        b = self.doc.size(0)
        if self.note.dim() != 2 or self.note.size(0) != b:
            raise ValueError(f"PatientBatch.note: expected [{b}, L], got shape {tuple(self.note.shape)}")
        if self.note_len.dim() != 1 or self.note_len.size(0) != b:
            raise ValueError(
                f"PatientBatch.note_len: expected [{b}], got shape {tuple(self.note_len.shape)}"
            )

    def __len__(self) -> int:
        return self.doc.size(0)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PatientBatch":
        """Copy of the batch on ``device``."""
        return PatientBatch(
            self.doc.to(device, non_blocking=non_blocking),
            self.note.to(device, non_blocking=non_blocking),
            self.note_len.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> "PatientBatch":
        """Copy of the batch in page-locked memory (for ``DataLoader(pin_memory=True)``)."""
        return PatientBatch(self.doc.pin_memory(), self.note.pin_memory(), self.note_len.pin_memory())


GraphInput = Batch | Data


def graph_index(graphs: GraphInput) -> tuple[Tensor, int]:
    """Node-to-graph index ``[N]`` and the number of graphs ``G`` of a Batch (or a single Data)."""
    batch = getattr(graphs, "batch", None)
    if batch is None:
        return graphs.drug.new_zeros(graphs.drug.size(0)), 1
    return batch, int(graphs.num_graphs)


def check_ids(ids: Tensor, num: int, where: str) -> None:
    """Raise a ``ValueError`` naming the first row of ``ids`` holding an id outside ``[0, num)``.

    Args:
        ids: ``[R, ...]`` integer tensor (drug ids, patient rows, ...).
        num: Number of valid ids.
        where: Field name for the message.
    """
    if ids.numel() == 0:
        return
    bad = ((ids < 0) | (ids >= num)).reshape(ids.size(0), -1).any(dim=1)
    if bool(bad.any()):
        raise ValueError(f"{where}: row {int(bad.nonzero()[0, 0])} holds an id outside [0, {num})")


def initial_edge_weight(rel: np.ndarray, p: np.ndarray) -> np.ndarray:
    """DPR-WG initial edge weight (paper 4.3.1): 1 / -1 / ``p_vu``.

    Args:
        rel: ``[E]`` relation ``R_vu``.
        p: ``[E]`` co-occurrence proportion ``p_vu``.

    Returns:
        ``[E]`` float32.
    """
    w = np.where(rel == REL_SYNERGISM, 1.0, np.where(rel == REL_ANTAGONISM, -1.0, p))
    return w.astype(np.float32)


def graphs_from_packages(
    packages: Sequence[np.ndarray],
    relation: np.ndarray,
    cooc: np.ndarray | sp.spmatrix | sp.sparray,
    threshold: float,
) -> Batch:
    """Build the package graphs of arbitrary packages (paper 4.2.1).

    Edge ``v -> u`` (``v != u``) exists when ``relation[v, u] != -1`` (a labelled pair)
    or ``cooc[v, u] > threshold``.

    Args:
        packages: Drug-id arrays, one per package (distinct ids in ``[0, M)``).
        relation: ``[M, M]`` int relation matrix ``R`` (-1 unknown, 0 none,
            1 synergism, 2 antagonism).
        cooc: ``[M, M]`` co-occurrence proportions ``p_vu`` (dense or scipy sparse).
        threshold: Co-occurrence threshold of the second criterion.

    Returns:
        A ``Batch`` of ``len(packages)`` graphs with ``drug``, ``edge_index``,
        ``edge_rel``, ``edge_p``, ``edge_w`` (see the module docstring).

    Raises:
        ValueError: naming the package index on an empty package, a repeated drug or a
            drug id out of range, or on matrices of the wrong shape.
    """
    relation = np.asarray(relation)
    m = relation.shape[0]
    if relation.ndim != 2 or relation.shape != (m, m):
        raise ValueError(f"graphs_from_packages: relation must be square [M, M], got {relation.shape}")
    if tuple(cooc.shape) != (m, m):
        raise ValueError(f"graphs_from_packages: cooc must be [{m}, {m}], got {tuple(cooc.shape)}")
    if len(packages) == 0:
        raise ValueError("graphs_from_packages: no packages given")
    pkgs = []
    for k, pkg in enumerate(packages):
        pkg = np.asarray(pkg, dtype=np.int64).ravel()
        if pkg.size == 0:
            raise ValueError(f"graphs_from_packages: package {k} is empty")
        if pkg.min() < 0 or pkg.max() >= m:
            raise ValueError(f"graphs_from_packages: package {k} has a drug id outside [0, {m})")
        if np.unique(pkg).size != pkg.size:
            raise ValueError(f"graphs_from_packages: package {k} repeats a drug")
        pkgs.append(pkg)

    # All ordered pairs (i, j), i != j, inside each package, vectorized over packages.
    sizes = np.array([p.size for p in pkgs], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nodes = np.concatenate(pkgs)
    node_graph = np.repeat(np.arange(len(pkgs)), sizes)
    src = np.repeat(np.arange(nodes.size), sizes[node_graph])  # each node once per member
    pair_graph = node_graph[src]
    # Position of the partner inside its package: 0..n-1 for each source node.
    first_pair = np.repeat(np.cumsum(sizes[node_graph]) - sizes[node_graph], sizes[node_graph])
    dst = starts[pair_graph] + (np.arange(src.size) - first_pair)
    keep = src != dst
    src, dst, pair_graph = src[keep], dst[keep], pair_graph[keep]

    dv, du = nodes[src], nodes[dst]
    rel = relation[dv, du].astype(np.int64)
    if sp.issparse(cooc):
        p = np.asarray(sp.csr_matrix(cooc)[dv, du], dtype=np.float64).ravel()
    else:
        p = np.asarray(cooc)[dv, du].astype(np.float64)
    edge = (rel != REL_UNKNOWN) | (p > threshold)  # compared at the input's precision
    src, dst, pair_graph, rel = src[edge], dst[edge], pair_graph[edge], rel[edge]
    p = p[edge].astype(np.float32)
    w = initial_edge_weight(rel, p)

    bounds = np.searchsorted(pair_graph, np.arange(1, len(pkgs)))
    data = []
    for k, (s, d, r, pp, ww) in enumerate(
        zip(*(np.split(a, bounds) for a in (src, dst, rel, p, w)))
    ):
        local = np.stack([s, d]) - starts[k]
        data.append(
            Data(
                drug=torch.from_numpy(pkgs[k]),
                edge_index=torch.from_numpy(local),
                edge_rel=torch.from_numpy(r),
                edge_p=torch.from_numpy(pp),
                edge_w=torch.from_numpy(ww),
                num_nodes=int(sizes[k]),
            )
        )
    return Batch.from_data_list(data)
