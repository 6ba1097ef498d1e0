"""The reference forward pass of :class:`~dpr_dist.models.dpr.DPR` (paper 4.3), per graph.

Every per-node and per-edge quantity is computed for every graph, also where a patient's
positive and negative packages share it: the equations as the paper writes them, in the
order it writes them. :mod:`dpr_dist.models.fast` computes the same function with less
work; ``model.fast: false`` selects this module instead, and
:meth:`DPR.explain <dpr_dist.models.dpr.DPR.explain>` /
:meth:`DPR.edge_factors <dpr_dist.models.dpr.DPR.edge_factors>` always use it (they need
the per-edge quantities that the fast path never materializes).

Like :mod:`dpr_dist.models.fast`, the functions take the model as their first argument
and use its modules; none has parameters of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch

from dpr_dist.models.batch import GraphInput, PatientBatch, graph_index
from dpr_dist.models.type_targets import relation_type_loss

if TYPE_CHECKING:  # pragma: no cover
    from dpr_dist.models.dpr import DPR


def forward_graphs(model: "DPR", u: Tensor, graphs: GraphInput, owner: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Package embeddings ``g`` (eqs. 9-14) and the edge quantities behind them.

    Args:
        model: The DPR model (any variant).
        u: ``[B, D_u]`` patient embeddings.
        graphs: ``G`` package graphs (see :mod:`dpr_dist.models.batch`).
        owner: ``[G]`` int64 row of ``u`` under which each graph is embedded.

    Returns:
        ``(g, aux)``: ``g`` ``[G, drug_dim]``; ``aux`` has ``e`` (WG: initial weights
        ``[E]``; AG: attribute vectors ``[E, edge_dim]``, eq. 16), ``e_hat`` (the same,
        updated by the patient: ``c * e`` or eq. 17) and, with the context factor, ``c``
        ``[E]`` (eq. 10).

    Raises:
        ValueError: from :meth:`DPR.check_graphs`.
    """
    model.check_graphs(graphs, owner, u.size(0))
    batch, num_graphs = graph_index(graphs)
    v = model.variant
    d = model.drug_emb(graphs.drug)  # h^(0) = d, [N, D]
    node_owner = owner[batch]  # patient row of each node, [N]
    src, dst = graphs.edge_index  # message v -> u: v = src, u = dst
    aux: dict[str, Tensor] = {}
    if v.graph == "wg":
        if v.initial_weights:  # e_vu = 1 (synergism) / -1 (antagonism) / p_vu (4.3.1)
            e = graphs.edge_w.to(d.dtype)
        else:
            e = d.new_ones(src.size(0))
        if v.context:
            d_hat = model.mask(u)[node_owner] * d  # eq. 9
            z = model.context_mlp(torch.cat([d_hat[dst], d_hat[src]], dim=-1))
            c = torch.tanh(model.context_a(z)).squeeze(-1)  # eq. 10
            e_hat = c * e
            aux["c"] = c
        else:
            e_hat = e
    else:
        e = model.edge_mlp(torch.cat([d[src], d[dst]], dim=-1))  # eq. 16
        e_hat = model.mask(u)[node_owner[dst]] * e if v.edge_mask else e  # eq. 17
    aux["e"], aux["e_hat"] = e, e_hat
    h = d
    for conv in model.convs:  # eqs. 11-13 (WG) / 18-20 (AG); e^ is the same in every layer
        h = conv(h, graphs.edge_index, e_hat)
    g = model.readout(d, h, batch, num_graphs)  # eq. 14
    return g, aux


def predict(model: "DPR", u: Tensor, g: Tensor, owner: Tensor) -> Tensor:
    """Scores ``MLP([u_owner || g])`` ``[G]`` (eq. 15)."""
    return model.predict(torch.cat([u[owner], g], dim=-1)).squeeze(-1)


def loss(
    model: "DPR", p: PatientBatch, graphs: Batch, owner: Tensor, num_negatives: int
) -> tuple[Tensor, dict[str, Tensor]]:
    """Package BPR (eq. 15) plus, for AG, the interaction-type cross-entropy (eq. 21).

    The layout, arguments and statistics are those of :meth:`DPR.loss`.

    Raises:
        ValueError: when the graphs or owners are not in the patient-major layout.
    """
    b, k = len(p), int(num_negatives)
    group = 1 + k
    _, num_graphs = graph_index(graphs)
    if num_graphs != b * group:
        raise ValueError(f"DPR.loss: expected {b} patients x (1 + {k}) = {b * group} graphs, got {num_graphs}")
    expected = torch.arange(b, device=owner.device).repeat_interleave(group)
    if owner.shape != expected.shape or not bool((owner == expected).all()):
        raise ValueError("DPR.loss: owner must be arange(B).repeat_interleave(1 + K) (patient-major)")
    u = model.encode(p)
    g, aux = forward_graphs(model, u, graphs, owner)
    s = predict(model, u, g, owner).view(b, group)
    diff = s[:, :1] - s[:, 1:]  # positive minus each negative, [B, K]
    bpr = -F.logsigmoid(diff).mean()  # eq. 15
    stats = {"bpr": bpr.detach(), "pair_acc": (diff > 0).float().mean().detach()}
    out = bpr
    if model.variant.type_loss:
        ce, n = type_loss(model, aux["e"], graphs, group)
        out = out + model.ce_weight * ce  # eq. 21
        stats["ce"], stats["ce_edges"] = ce.detach(), n.detach()
    return out, stats


def type_loss(model: "DPR", e: Tensor, graphs: Batch, group: int) -> tuple[Tensor, Tensor]:
    """Mean ``-ln softmax(e_vu^T Q)[R_vu]`` over labelled edges of positive graphs, and their count (eq. 21).

    Computed with a mask (no data-dependent shapes), so ``Q`` takes part in every step.
    With ``model.type_targets: relation`` over the labelled pairs of ``R`` instead
    (:func:`~dpr_dist.models.type_targets.relation_type_loss`; ``e`` and ``graphs`` unused).

    Args:
        model: A DPR variant with the type loss.
        e: ``[E, edge_dim]`` unmasked edge attributes (eq. 16).
        graphs: The ``B * group`` graphs, patient-major (graph ``i * group`` is positive).
        group: ``1 + K``.
    """
    if model.type_targets == "relation":
        return relation_type_loss(model)
    batch, _ = graph_index(graphs)
    rel = graphs.edge_rel
    positive = batch[graphs.edge_index[1]] % group == 0
    use = positive & (rel != -1)
    per_edge = F.cross_entropy(model.type_proj(e), rel.clamp(min=0), reduction="none")
    n = use.sum()
    ce = (per_edge * use.to(per_edge.dtype)).sum() / n.clamp(min=1).to(per_edge.dtype)
    return ce, n
