"""Candidate ranking: the listwise F1 term and the wrapper around a package model's loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dpr_dist.models.batch import graphs_from_packages
from dpr_dist.models.dpr import DPR
from dpr_dist.models.ranking import CandidateBatch, CandidateRanking, listwise_loss


def grid_batch(valid: np.ndarray, target: np.ndarray) -> CandidateBatch:
    owner, col = np.nonzero(valid)
    k = valid.shape[1]
    return CandidateBatch(None, torch.from_numpy(owner), torch.from_numpy(owner * k + col),
                          torch.from_numpy(target.astype(np.float32)), torch.from_numpy(valid))


def test_listwise_loss_by_hand():
    valid = np.array([[True, True, False], [True, False, False]])  # row 1 has one candidate: ignored
    target = np.array([[0.5, 0.0, 0.0], [1.0, 0.0, 0.0]])
    cb = grid_batch(valid, target)
    scores = torch.tensor([1.0, 0.0, 7.0])
    p = np.exp([5.0, 0.0]) / np.exp([5.0, 0.0]).sum()  # softmax(F1 / 0.1)
    logq = np.array([1.0, 0.0]) - math.log(math.exp(1.0) + 1.0)
    expect = -(p * logq).sum()
    assert float(listwise_loss(scores, cb, 0.1)) == pytest.approx(expect, rel=1e-6)
    # no row with two candidates: zero, not NaN
    assert float(listwise_loss(torch.tensor([3.0]), grid_batch(valid[1:], target[1:]), 0.1)) == 0.0
    with pytest.raises(ValueError, match="tau"):
        listwise_loss(scores, cb, 0.0)


def test_listwise_gradient_raises_the_best_candidate():
    valid = np.ones((1, 3), bool)
    cb = grid_batch(valid, np.array([[0.2, 0.9, 0.4]]))
    s = torch.zeros(3, requires_grad=True)
    listwise_loss(s, cb, 0.1).backward()
    assert s.grad[1] < 0 < s.grad[0]  # gradient descent raises the best, lowers the worst


def test_wrapper_adds_the_term_and_reaches_every_parameter(small_cfg, toy):
    torch.manual_seed(0)
    m = DPR(small_cfg, toy.num_drugs, toy.num_doc_words, toy.num_chars, "ag")
    b, k = len(toy.patients), 4
    rng = np.random.default_rng(0)
    pkgs = [rng.choice(toy.num_drugs, size=int(rng.integers(2, 6)), replace=False) for _ in range(b * k - 2)]
    valid = np.ones((b, k), bool)
    valid[0, 3] = valid[2, 2] = False
    owner, col = np.nonzero(valid)
    graphs = graphs_from_packages(pkgs, toy.relation, toy.cooc, toy.threshold)
    own = torch.from_numpy(owner)
    cb = CandidateBatch(graphs, own, torch.from_numpy(owner * k + col),
                        torch.from_numpy(rng.random((b, k)).astype(np.float32)), torch.from_numpy(valid),
                        m.plan(graphs, own, b))
    base, _ = m(toy.patients, toy.graphs, toy.owner, toy.num_negatives)
    wrapped = CandidateRanking(m, weight=0.5, tau=0.1)
    total, stats = wrapped(toy.patients, toy.graphs, toy.owner, toy.num_negatives, candidates=cb)
    scores = m.score(m.encode(toy.patients), graphs, own)
    expect = base + 0.5 * listwise_loss(scores, cb, 0.1)
    torch.testing.assert_close(total, expect)
    assert float(stats["rank"]) > 0
    total.backward()
    assert all(p.grad is not None for p in m.parameters())
    # weight 0 or no candidates: exactly the model's own loss
    m.zero_grad()
    torch.testing.assert_close(CandidateRanking(m, 0.0, 0.1)(toy.patients, toy.graphs, toy.owner,
                                                            toy.num_negatives, candidates=cb)[0], base)
    torch.testing.assert_close(wrapped(toy.patients, toy.graphs, toy.owner, toy.num_negatives)[0], base)
    with pytest.raises(ValueError):
        CandidateRanking(m, -1.0, 0.1)
