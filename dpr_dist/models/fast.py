"""The fast path of DPR: the same function as :mod:`dpr_dist.models.dpr`, with less work.

:class:`~dpr_dist.models.dpr.DPR` computes everything per graph node and per graph edge,
so a training step (``B`` patients, each with ``1 + K`` packages scored under its own
condition) repeats much of its work ``1 + K`` times. This module restructures the hot
path without changing a single number the model computes (up to float rounding):

* **Per-drug and per-(patient, drug) tables.** The first layer of every MLP on a
  concatenation ``[x || y]`` splits into ``W_a x + W_b y``: both halves are computed once
  per distinct drug (or per distinct (patient, drug) for masked drug embeddings, eq. 9)
  and gathered per edge or node. ``h^(0) = d`` depends on the drug only, so layer 1 of
  every GNN works on ``[M_b, *]`` tables of the batch's ``M_b`` distinct drugs.
* **WG (eqs. 9-12).** ``c_vu = tanh(a^T (W2 relu(...) + b2)) = tanh((a^T W2) relu(...) +
  a^T b2)``: per edge only the hidden layer's ``relu`` and a dot product remain, on halves
  of the first layer computed per (patient, drug). The GRU of eq. 12 has input ``e^_vu *
  W1 h_v``: its input-side product ``W_ih W1 h_v`` and its hidden-side ``W_hh h_u + b_hh``
  are per-node (layer 1: per-drug) quantities, so only gates and elementwise work remain
  per edge. Both run in custom autograd functions over edge chunks
  (:mod:`dpr_dist.models.fast_kernels`) that keep intermediates in cache and recompute
  them in the backward pass.
* **AG (eqs. 16-19).** ``e_vu`` depends on the two drugs only: computed once per distinct
  drug pair of the batch. Eqs. 17-19 are linear, so ``sum_v W1 (mask ⊙ e_vu) = W1 (mask ⊙
  sum_v e_vu)``: ``S_u = sum_v e_vu`` is computed once, for every layer (divided by the
  in-degree with ``model.aggr: mean``).
* **Unmasked variants** (``gnn``, ``wg_context``, ``ag_mask``): a package embedding does
  not depend on the patient, so each distinct package of the batch (found exactly: hash,
  then element-wise comparison) is embedded once.
* **The note LSTM** runs over the padded batch (:func:`encode`), not a packed sequence,
  whose backward pass fills a zero tensor of all the batch's characters at every step.

Every index map is built with numpy on the CPU (:func:`~dpr_dist.models.fast_plan.build_plan`),
before a batch goes to the accelerator; the forward pass then runs without host
synchronisation (no ``.item()``, no data-dependent shapes, no ``torch.unique``) on CPU or
CUDA. Per-edge kernels (:mod:`dpr_dist.models.fast_kernels`) run in float32 (also under
autocast); the matrix products follow the autocast policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpr_dist.models.batch import PatientBatch
from dpr_dist.models.fast_kernels import context_factor, gru_messages, kernel_dtype
from dpr_dist.models.fast_plan import FastPlan, build_plan
from dpr_dist.models.type_targets import relation_type_loss

if TYPE_CHECKING:  # dpr.py imports this module
    from dpr_dist.models.dpr import DPR

__all__ = ["FastPlan", "build_plan", "encode", "package_embedding", "score", "loss"]


def _readout(ro: nn.Module, d: Tensor, node_drug: Tensor, h: Tensor, node_graph: Tensor, num_graphs: int) -> Tensor:
    """Eq. 14 with both MLPs' first layers split into a per-drug ``d`` part and a per-node ``h`` part."""
    dim = d.size(1)
    g1, v1 = ro.gate[0], ro.value[0]
    w_d = torch.cat([g1.weight[:, :dim], v1.weight[:, :dim]])
    w_h = torch.cat([g1.weight[:, dim:], v1.weight[:, dim:]])
    a = torch.relu(F.linear(d, w_d, torch.cat([g1.bias, v1.bias]))[node_drug] + F.linear(h, w_h))
    hid = g1.out_features
    per_node = torch.sigmoid(ro.gate[2](a[:, :hid])) * ro.value[2](a[:, hid:])
    return per_node.new_zeros(num_graphs, per_node.size(1)).index_add(0, node_graph, per_node)


def _wg_nodes(model: "DPR", u: Tensor, d: Tensor, plan: FastPlan) -> Tensor:
    """Final node states of DPR-WG / GNN (eqs. 9-13), ``[N, D]``."""
    v, dim, num = model.variant, d.size(1), plan.num_nodes
    e = plan.edge_w.to(kernel_dtype(d)) if v.initial_weights else None
    if v.context:  # eqs. 9-10; d^ and both halves of the MLP's first layer per (patient, drug)
        d_hat = model.mask(u)[plan.od_owner] * d[plan.od_drug]
        l1, l2, a = model.context_mlp[0], model.context_mlp[2], model.context_a.weight
        a_u = F.linear(d_hat, l1.weight[:, :dim], l1.bias)  # MLP([d^_u || d^_v]): u first
        b_v = F.linear(d_hat, l1.weight[:, dim:])
        c = context_factor(a_u, b_v, (a @ l2.weight).squeeze(0), a @ l2.bias, plan.node_od[plan.dst],
                           plan.node_od[plan.src])
        e_hat = c * e if e is not None else c
    else:
        e_hat = e if e is not None else d.new_ones(plan.src.numel(), dtype=kernel_dtype(d))
    table, src, dst = d, plan.node_drug[plan.src], plan.node_drug[plan.dst]  # layer 1: per drug
    h = None
    for conv in model.convs:  # eqs. 11-13
        gru = conv.gru
        p_in = F.linear(table, gru.weight_ih @ conv.lin1.weight)
        h_hid = F.linear(table, gru.weight_hh, gru.bias_hh)
        msg = gru_messages(e_hat, p_in, h_hid, table, gru.bias_ih, src, dst, plan.dst, num)
        if model.aggr == "mean":  # model.aggr: the mean of the GRU outputs instead of their sum
            msg = msg / plan.in_degree.to(msg.dtype).unsqueeze(-1)
        x0 = F.linear(table, conv.lin0.weight)
        h = conv.mlp((x0 if h is not None else x0[plan.node_drug]) + msg)
        table, src, dst = h, plan.src, plan.dst
    return h


def _ag_nodes(model: "DPR", u: Tensor, d: Tensor, plan: FastPlan) -> tuple[Tensor, Tensor]:
    """Final node states of DPR-AG (eqs. 16-20) ``[N, D]`` and ``e`` per distinct pair ``[P, edge_dim]``."""
    dim = d.size(1)
    l1 = model.edge_mlp[0]
    left = F.linear(d, l1.weight[:, :dim], l1.bias)  # MLP([d_v || d_u]): v first (eq. 16)
    right = F.linear(d, l1.weight[:, dim:])
    e_pair = model.edge_mlp[2](torch.relu(left[plan.pair_src] + right[plan.pair_dst]))
    rows = e_pair.to(kernel_dtype(e_pair)).index_select(0, plan.edge_pair)  # summed in float32 under autocast
    s = rows.new_zeros(plan.num_nodes, rows.size(1)).index_add(0, plan.dst, rows)  # S_u = sum_v e_vu
    if model.aggr == "mean":  # model.aggr: mean_v e_vu instead of the sum
        s = s / plan.in_degree.to(s.dtype).unsqueeze(-1)
    if model.variant.edge_mask:  # sum_v mask * e_vu = mask * sum_v e_vu (eqs. 17, 19)
        s = model.mask(u)[plan.owner[plan.node_graph]] * s
    h = None
    for conv in model.convs:  # W1 sum_v e^_vu = sum_v W1 e^_vu (eqs. 18-20)
        x0 = F.linear(d if h is None else h, conv.lin0.weight)
        h = conv.mlp((x0[plan.node_drug] if h is None else x0) + F.linear(s, conv.lin1.weight))
    return h, e_pair


def _embed(model: "DPR", u: Tensor, plan: FastPlan) -> tuple[Tensor, Tensor | None]:
    if plan.num_patients != u.size(0):
        raise ValueError(f"DPR: the plan was built for {plan.num_patients} patients, u has {u.size(0)} rows")
    d = model.drug_emb(plan.drugs)
    if model.variant.graph == "wg":
        h, e_pair = _wg_nodes(model, u, d, plan), None
    else:
        h, e_pair = _ag_nodes(model, u, d, plan)
    g = _readout(model.readout, d, plan.node_drug, h, plan.node_graph, plan.num_reps)
    return (g if plan.graph_rep is None else g[plan.graph_rep]), e_pair


def encode(model: "DPR", p: PatientBatch) -> Tensor:
    """Patient embeddings ``u`` (eqs. 1-3), as :meth:`PatientEncoder.forward`, with the batch
    validated only when it is on the CPU (on an accelerator, by the collate step: the
    checks would synchronize with the host)."""
    if p.doc.device.type == "cpu":
        model.encoder.check(p)
    return model.encoder.embed(p)


def package_embedding(model: "DPR", u: Tensor, plan: FastPlan) -> Tensor:
    """``g`` ``[G, drug_dim]`` (eq. 14), as :meth:`DPR.package_embedding`."""
    return _embed(model, u, plan)[0]


def _predict(model: "DPR", u: Tensor, g: Tensor, owner: Tensor) -> Tensor:
    """``MLP([u_owner || g])`` with the first layer's ``u`` part computed per patient."""
    l1, du = model.predict[0], u.size(1)
    pre = F.linear(u, l1.weight[:, :du], l1.bias)[owner] + F.linear(g, l1.weight[:, du:])
    return model.predict[2](torch.relu(pre)).squeeze(-1)


def score(model: "DPR", u: Tensor, plan: FastPlan) -> Tensor:
    """Scores ``[G]`` (eq. 15), as :meth:`DPR.score`."""
    return _predict(model, u, package_embedding(model, u, plan), plan.owner)


def loss(model: "DPR", p: PatientBatch, plan: FastPlan, num_negatives: int) -> tuple[Tensor, dict[str, Tensor]]:
    """BPR (+ CE) loss and statistics, as :meth:`DPR.loss` (the layout was checked by :func:`build_plan`)."""
    b, group = len(p), 1 + int(num_negatives)
    if plan.group != group or plan.num_patients != b:
        raise ValueError(f"DPR.loss: the plan was built for {plan.num_patients} patients x {plan.group} graphs "
                         f"(group), the call has {b} x {group}; build it with num_negatives={num_negatives}")
    u = encode(model, p)
    g, e_pair = _embed(model, u, plan)
    s = _predict(model, u, g, plan.owner).view(b, group)
    s = s.to(kernel_dtype(s))  # the BPR terms in float32 also under autocast
    diff = s[:, :1] - s[:, 1:]
    bpr = -F.logsigmoid(diff).mean()
    stats = {"bpr": bpr.detach(), "pair_acc": (diff > 0).float().mean().detach()}
    out = bpr
    if model.variant.type_loss and model.type_targets == "relation":  # pairs of R (models/type_targets.py)
        ce, n = relation_type_loss(model)
        out = out + model.ce_weight * ce
        stats["ce"], stats["ce_edges"] = ce.detach(), n.detach()
    elif model.variant.type_loss:  # -ln softmax(e^T Q)[R], per distinct (pair, relation) x count
        logp = torch.log_softmax(model.type_proj(e_pair).to(kernel_dtype(e_pair)), dim=-1)
        n = plan.ce_edges
        ce = -(logp[plan.ce_pair, plan.ce_rel] * plan.ce_count.to(logp.dtype)).sum() / n.clamp(min=1).to(logp.dtype)
        out = out + model.ce_weight * ce
        stats["ce"], stats["ce_edges"] = ce.detach(), n.detach()
    return out, stats
