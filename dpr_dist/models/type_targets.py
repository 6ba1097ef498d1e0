"""Which labelled drug pairs teach DPR-AG's edge attributes the interaction types (eq. 21).

The paper's hybrid loss (eq. 21) adds ``-ln softmax(e_vu^T Q)[R_vu]`` over the labelled
edges of each patient's *own* package graph. The edges of a real package are the pairs that
doctors do prescribe together, so the types they teach are the ones doctors keep:
synergism, sometimes "no reaction", and almost never antagonism, which doctors avoid. On the
synthetic benchmark almost every labelled package edge is a synergism, and a type head
trained on them predicts synergism for every pair, antagonistic ones included
(docs/results.md, "What DPR-AG's edge attributes know about interaction types").

``model.type_targets: relation`` runs the same cross-entropy over the labelled pairs of the
relation matrix ``R`` itself (the prior knowledge, every type as often as the interaction
table has it) instead of the package edges. ``e_vu = MLP([d_v || d_u])`` (eq. 16) depends
on the two drugs only, so a pair's term does not need a package graph: it is

    L_type = mean over sampled (v, u) with R_vu != -1 of  -ln softmax(MLP([d_v || d_u])^T Q)[R_vu]

with at most ``model.type_pairs`` pairs drawn uniformly per step. The loss then is
``L_bpr + ce_weight * L_type`` as with the graph edges. ``"graph"`` (the default) is the
paper's.

Trained jointly with the ranking losses from the first step, ``L_type`` stays at the
class prior for hundreds of steps (the head answers the commonest type); alone, it learns
every pair's type of the bench data's ``R`` in about 200 Adam steps, and the joint loss
keeps what it learned. ``model.type_warmup`` steps of ``L_type`` alone before the first
epoch (:func:`warm_up_types`) do that. The price, measured on the bench data: edge
attributes that carry the types make worse messages for the recommendation, and DPR-AG's
test F1 falls by 0.011-0.013 (two seeds; docs/results.md, "What DPR-AG's edge attributes
know about interaction types"). So this is an option for explanations that have to be
right about the types (Table 8), not a default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # imports only for annotations (dpr imports this module)
    from dpr_dist.data.graphs import PairTable
    from dpr_dist.models.dpr import DPR

def relation_pairs(relation: "PairTable") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labelled ordered pairs of ``R``.

    Args:
        relation: ``R`` over the drug vocabulary (values -1 unknown, 0 none, 1 synergism,
            2 antagonism).

    Returns:
        ``(src [P], dst [P], rel [P])`` int64: ``v``, ``u`` and ``R_vu`` of every pair with
        ``R_vu != -1``.
    """
    m = int(relation.num_drugs)
    keys = np.asarray(relation.keys, np.int64)
    rel = np.asarray(relation.values).astype(np.int64)
    use = rel >= 0
    return keys[use] // m, keys[use] % m, rel[use]


def set_type_pairs(model: "DPR", relation: "PairTable") -> int:
    """Give ``model`` the labelled pairs of ``R`` for ``model.type_targets: relation``.

    They are kept as plain tensor attributes, not buffers: they are not saved with the
    weights (a loaded model scores and explains without them), and DDP does not broadcast
    them at every step (every rank sets the same pairs). :func:`relation_type_loss` moves them
    to the model's device on first use.

    Returns:
        The number of labelled pairs.

    Raises:
        ValueError: when the model has no type loss, or ``R`` is over another vocabulary.
    """
    if not model.variant.type_loss:
        raise ValueError(f"set_type_pairs: variant {model.variant.name!r} has no interaction-type loss")
    if int(relation.num_drugs) != model.num_drugs:
        raise ValueError(f"set_type_pairs: R is over {relation.num_drugs} drugs, the model over {model.num_drugs}")
    src, dst, rel = relation_pairs(relation)
    model.type_src, model.type_dst, model.type_rel = (torch.as_tensor(a) for a in (src, dst, rel))
    return int(rel.size)


def relation_type_loss(model: "DPR") -> tuple[Tensor, Tensor]:
    """``L_type`` (module docs) and the number of pairs it averaged over.

    Uses all pairs when ``R`` has at most ``model.type_pairs`` labelled pairs, else that many
    drawn uniformly with replacement (torch's generator, seeded by the trainer).

    Raises:
        ValueError: when :func:`set_type_pairs` was not called.
    """
    rel = getattr(model, "type_rel", None)
    if rel is None:
        raise ValueError("DPR: model.type_targets is 'relation' but the model has no pairs of R; "
                         "call dpr_dist.models.type_targets.set_type_pairs(model, relation) first")
    d = model.drug_emb.weight
    if rel.device != d.device:
        model.type_src, model.type_dst, model.type_rel = (t.to(d.device) for t in
                                                          (model.type_src, model.type_dst, rel))
    src, dst, rel = model.type_src, model.type_dst, model.type_rel
    n = rel.numel()
    if n == 0:
        zero = model.type_proj.weight.sum() * 0.0  # keeps Q in the graph (DDP)
        return zero, torch.zeros((), dtype=torch.int64, device=rel.device)
    if n > model.type_pairs:
        pick = torch.randint(n, (model.type_pairs,), device=rel.device)
        src, dst, rel = src[pick], dst[pick], rel[pick]
    e = model.edge_mlp(torch.cat([d[src], d[dst]], dim=-1))  # eq. 16
    ce = F.cross_entropy(model.type_proj(e).float(), rel)
    return ce, torch.tensor(rel.numel(), dtype=torch.int64, device=rel.device)


def warm_up_types(model: "DPR", steps: int, lr: float) -> tuple[float, float]:
    """``steps`` Adam steps (learning rate ``lr``) of :func:`relation_type_loss` alone, before
    training (``model.type_warmup``), on the type path's own parameters: the edge MLP of
    eq. 16 and ``Q``; the drug embeddings (NCF's, paper 4.1) are left as they are, and the
    head is fitted to them. Deterministic given the model and ``R`` (all pairs when ``R``
    has at most ``model.type_pairs``), so every rank does the same.

    Returns:
        ``L_type`` before and after.
    """
    opt = torch.optim.Adam([*model.edge_mlp.parameters(), *model.type_proj.parameters()], lr=lr)
    with torch.no_grad():
        before = float(relation_type_loss(model)[0])
    for _ in range(int(steps)):
        opt.zero_grad(set_to_none=True)
        relation_type_loss(model)[0].backward()
        opt.step()
    with torch.no_grad():
        after = float(relation_type_loss(model)[0])
    model.zero_grad(set_to_none=True)
    return before, after
