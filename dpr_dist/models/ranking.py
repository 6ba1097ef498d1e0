"""Candidate ranking: train the package models on the decision they make at test time.

At test time a package model never sees the patient's own package: it picks one of the
packages of the ``eval.neighbors`` most similar training patients (paper 5.1.1), and the
pick is judged by its F1 against the true package. The paper's BPR loss (eq. 15) only
teaches *own package above other packages*; among a candidate set of near misses it does
not say which one is closest to the truth. :class:`CandidateRanking` adds that signal:
for each training patient, its own candidate set (the packages of its nearest *other*
training patients, :mod:`dpr_dist.train.neighbourhood`) is scored under the patient's
condition, and a listwise cross-entropy pulls the score distribution towards
``softmax(F1(candidate, own package) / tau)``:

    L = L_paper + w * mean_i  - sum_c softmax(F1_ic / tau)_c * log softmax(s_ic)_c

``L_paper`` is the model's own loss (eq. 15, or eq. 21 for DPR-AG) with its
global-batch negatives, unchanged. ``F1_ic`` is the target the neighbourhood hands in
(:attr:`CandidateBatch.target`): the F1 against the own package, or that shrunk toward the
candidate's mean F1 against the rest of its set (``train.rank_consensus``). The wrapper works for every package model with
``encode`` and ``score`` (the DPR variants, GNN, the package baselines), so all of them
train the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class CandidateBatch:
    """The candidate sets of a batch's patients, flattened for one scoring call.

    Attributes:
        graphs: ``C`` candidate package graphs (a PyG ``Batch``).
        owner: ``[C]`` int64 patient row of each candidate.
        slot: ``[C]`` int64 position of each candidate in the ``[B, k]`` grid
            (``row * k + column``).
        target: ``[B, k]`` float32 ranking target of each candidate: its F1 against the
            patient's own package, optionally shrunk toward its consensus F1 (0 on empty
            slots).
        valid: ``[B, k]`` bool, True on slots holding a candidate.
        plan: The DPR fast path's index maps of ``(graphs, owner)`` (None for other models).
    """

    graphs: Any
    owner: Tensor
    slot: Tensor
    target: Tensor
    valid: Tensor
    plan: Any = None

    def to(self, device: torch.device | str) -> "CandidateBatch":
        return replace(self, graphs=self.graphs.to(device), owner=self.owner.to(device), slot=self.slot.to(device),
                       target=self.target.to(device), valid=self.valid.to(device),
                       plan=None if self.plan is None else self.plan.to(device))


def listwise_loss(scores: Tensor, cands: CandidateBatch, tau: float) -> Tensor:
    """``-sum_c softmax(F1 / tau)_c log softmax(s)_c``, averaged over patients with >= 2 candidates.

    Args:
        scores: ``[C]`` scores of the flat candidates.
        cands: Their grid positions, targets and validity.
        tau: Temperature of the target distribution (> 0).

    Returns:
        A scalar (0 when no patient has two candidates).
    """
    if tau <= 0:
        raise ValueError(f"listwise_loss: tau must be > 0, got {tau}")
    valid = cands.valid
    b, k = valid.shape
    neg = torch.finfo(torch.float32).min / 4
    grid = scores.new_full((b * k,), neg, dtype=torch.float32).index_put((cands.slot,), scores.float()).view(b, k)
    logits_t = torch.where(valid, cands.target.float() / tau, torch.full_like(cands.target.float(), neg))
    p = torch.softmax(logits_t, dim=1)
    per_row = -(p * torch.log_softmax(grid, dim=1)).masked_fill(~valid, 0.0).sum(dim=1)
    use = (valid.sum(dim=1) >= 2).float()
    return (per_row * use).sum() / use.sum().clamp(min=1.0)


class CandidateRanking(nn.Module):
    """A package model's own training loss plus the candidate-ranking term (module docs).

    Args:
        model: A package model (``forward(p, graphs, owner, k, **kw) -> (loss, stats)``,
            ``encode``, ``score``).
        weight: ``w``, the weight of the ranking term.
        tau: Temperature of the F1 targets.
    """

    def __init__(self, model: nn.Module, weight: float, tau: float) -> None:
        super().__init__()
        if weight < 0 or tau <= 0:
            raise ValueError(f"CandidateRanking: weight must be >= 0 and tau > 0, got {weight}, {tau}")
        self.model, self.weight, self.tau = model, float(weight), float(tau)

    def forward(self, p, graphs, owner: Tensor, num_negatives: int, candidates: CandidateBatch | None = None,
                **kwargs) -> tuple[Tensor, dict[str, Tensor]]:
        """``(loss, stats)``; ``stats`` gains ``rank`` (the listwise term) when candidates are given."""
        loss, stats = self.model(p, graphs, owner, num_negatives, **kwargs)
        if candidates is None or self.weight == 0:
            return loss, stats
        u = self.model.encode(p)
        extra = {"plan": candidates.plan} if candidates.plan is not None else {}
        scores = self.model.score(u, candidates.graphs, candidates.owner, **extra)
        rank = listwise_loss(scores, candidates, self.tau)
        return loss + self.weight * rank, {**stats, "rank": rank.detach()}
