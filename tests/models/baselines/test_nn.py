"""NN baseline (``dpr_dist/models/baselines/nn.py``): the nearest training patient's package."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpr_dist.eval.candidates import CandidateIndex, brute_force_topk
from dpr_dist.models.baselines import NearestNeighbor
from dpr_dist.models.batch import graphs_from_packages


def test_not_trainable_and_loss_raises(small_cfg, make_baseline, two_patients):
    m = make_baseline("nn", small_cfg)
    assert isinstance(m, NearestNeighbor) and m.trainable is False
    with pytest.raises(RuntimeError, match="no training"):
        m.loss(two_patients.patients, two_patients.graphs, two_patients.owner, 1)


def test_scores_are_constant(small_cfg, make_baseline, two_patients):
    m = make_baseline("nn", small_cfg)
    u = m.encode(two_patients.patients)
    assert torch.equal(m.score(u, two_patients.graphs, two_patients.owner), torch.zeros(4))
    assert torch.equal(m.package_embedding(u, two_patients.graphs, two_patients.owner), u[two_patients.owner])


def test_picks_the_nearest_training_patients_package(small_cfg, make_baseline):
    """End to end with the evaluator's candidate sets: NN's pick is the cosine-nearest package."""
    rng = np.random.default_rng(0)
    num_drugs, n_train, n_query, k = 10, 40, 12, 5
    train_emb = rng.normal(size=(n_train, 6)).astype(np.float32)
    train_pkgs = [np.sort(rng.choice(num_drugs, size=int(rng.integers(2, 6)), replace=False))
                  for _ in range(n_train)]
    queries = rng.normal(size=(n_query, 6)).astype(np.float32)
    index = CandidateIndex(train_emb, train_pkgs)
    cands = index.query(queries, k=k)
    owner, csr = cands.flat()
    packages = np.split(csr.indices, csr.indptr[1:-1])
    relation = np.full((num_drugs, num_drugs), -1, dtype=np.int8)
    graphs = graphs_from_packages(packages, relation, np.zeros((num_drugs, num_drugs)), 0.5)
    m = make_baseline("nn", small_cfg)
    u = torch.from_numpy(rng.normal(size=(n_query, small_cfg.mlp_out + small_cfg.lstm_hidden)).astype(np.float32))
    slot, picked = cands.pick(m.score(u, graphs, torch.from_numpy(owner)))
    nearest, _ = brute_force_topk(train_emb, queries, 1)
    assert (slot == 0).all()
    for q in range(n_query):
        assert np.array_equal(picked[q], np.sort(train_pkgs[nearest[q, 0]]))
