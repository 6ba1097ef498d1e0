"""What a DPR-AG model's edge attributes know about interaction types (eq. 21).

DPR-AG's hybrid loss (eq. 21) trains ``softmax(e_vu^T Q)`` to give the type ``R_vu`` of a
labelled drug pair, so that the edge attributes ``e_vu = MLP([d_v || d_u])`` (eq. 16) carry
it, and the case study of the paper (Table 8) reads the personalized type probabilities
``softmax(e^_vu^T Q)`` as an explanation. Whether that worked is checked here: the type
head's non-personalized prediction on every labelled pair of ``R``, against ``R``.

A head that always answers the commonest type reaches the *majority accuracy*; its
balanced accuracy (the mean of the per-type recalls) is then 1/3. The per-type recalls say
which types the attributes tell apart (docs/results.md, "What DPR-AG's edge attributes know
about interaction types").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from dpr_dist.models.type_targets import relation_pairs

if TYPE_CHECKING:
    from dpr_dist.data.graphs import PairTable

TYPE_NAMES = ("none", "synergism", "antagonism")  # R's codes 0, 1, 2


def has_type_head(model: nn.Module | None) -> bool:
    """Whether ``model`` is a DPR variant trained with the type loss (``ag``, ``ag_mask``)."""
    return bool(getattr(getattr(model, "variant", None), "type_loss", False))


@torch.no_grad()
def type_predictions(model: nn.Module, src: np.ndarray, dst: np.ndarray, batch: int = 65536) -> np.ndarray:
    """Non-personalized type ``argmax softmax(MLP([d_v || d_u])^T Q)`` of drug pairs.

    Args:
        model: A DPR variant with a type head.
        src, dst: ``[P]`` drug ids ``v`` and ``u``.
        batch: Pairs per forward call.

    Returns:
        ``[P]`` int64 in ``{0, 1, 2}`` (:data:`TYPE_NAMES`).
    """
    d = model.drug_emb.weight
    out = []
    for s in range(0, len(src), batch):
        v = torch.as_tensor(src[s: s + batch], device=d.device)
        u = torch.as_tensor(dst[s: s + batch], device=d.device)
        e = model.edge_mlp(torch.cat([d[v], d[u]], dim=-1))  # eq. 16
        out.append(model.type_proj(e).argmax(dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def type_head_metrics(model: nn.Module, relation: "PairTable") -> dict[str, float]:
    """The type head against ``R`` over all its labelled pairs.

    Returns:
        ``type_pairs`` (labelled pairs), ``type_accuracy``, ``type_majority_accuracy``
        (always answering the commonest type), ``type_balanced_accuracy`` (mean recall over
        the types ``R`` has) and ``type_recall_<name>`` for each type of :data:`TYPE_NAMES`
        that ``R`` has.

    Raises:
        ValueError: when the model has no type head.
    """
    if not has_type_head(model):
        raise ValueError(f"type_head_metrics: {type(model).__name__} has no interaction-type head (DPR-AG only)")
    src, dst, rel = relation_pairs(relation)
    n = int(rel.size)
    if n == 0:
        return {"type_pairs": 0}
    was_training = model.training
    model.eval()
    pred = type_predictions(model, src, dst)
    model.train(was_training)
    counts = np.bincount(rel, minlength=3)
    out: dict[str, float] = {"type_pairs": n, "type_accuracy": float((pred == rel).mean()),
                             "type_majority_accuracy": float(counts.max() / n)}
    recalls = []
    for code, name in enumerate(TYPE_NAMES):
        if counts[code]:
            r = float((pred[rel == code] == code).mean())
            out[f"type_recall_{name}"] = r
            recalls.append(r)
    out["type_balanced_accuracy"] = float(np.mean(recalls))
    return out


def describe_type_head(m: dict[str, float]) -> str:
    """One sentence for a person: :func:`type_head_metrics` ``m`` in words."""
    if not m.get("type_pairs"):
        return "R has no labelled pair, so the type head was never trained."
    recalls = ", ".join(f"{t} {m[f'type_recall_{t}']:.2f}" for t in TYPE_NAMES if f"type_recall_{t}" in m)
    return (f"on all {m['type_pairs']:,} labelled pairs of R, the non-personalized type is right for "
            f"{m['type_accuracy']:.1%} (always answering the commonest type: {m['type_majority_accuracy']:.1%}); "
            f"recall per type: {recalls}")
