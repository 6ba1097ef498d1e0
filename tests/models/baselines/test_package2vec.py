"""Package2vec baseline (``dpr_dist/models/baselines/package2vec.py``): item2vec package vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpr_dist.models.baselines import Package2vec


def test_fit_is_deterministic_given_the_seed(small_cfg, make_baseline, corpus):
    a = make_baseline("package2vec", small_cfg, fit=False)
    b = make_baseline("package2vec", small_cfg, seed=3, fit=False)  # other init: the fit does not use it
    a.fit_packages(corpus, 10, seed=7)
    b.fit_packages(corpus, 10, seed=7)
    assert bool(a.fitted) and torch.equal(a.item_vec, b.item_vec)
    b.fit_packages(corpus, 10, seed=8)
    assert not torch.equal(a.item_vec, b.item_vec)


def test_co_prescribed_drugs_get_similar_vectors(small_cfg, make_baseline):
    m = make_baseline("package2vec", small_cfg)  # fitted on drugs 0-3 together, 4-7 together
    v = m.item_vec
    sim = F.normalize(v, dim=1) @ F.normalize(v, dim=1).T
    same = torch.tensor([[sim[i, j] for j in g if j != i] for g in ([0, 1, 2, 3], [4, 5, 6, 7]) for i in g])
    other = sim[:4, 4:8]
    assert same.min() > other.max()
    assert torch.allclose(v[:8].norm(dim=1), torch.ones(8))  # unit vectors of seen drugs
    assert torch.equal(v[8:], torch.zeros(2, small_cfg.drug_dim))  # 8, 9 never prescribed


def test_package_embedding_is_the_mean_item_vector(small_cfg, make_baseline, make_graphs):
    m = make_baseline("package2vec", small_cfg)
    packages = [np.array([0, 2, 5]), np.array([9])]
    u = torch.zeros(1, small_cfg.mlp_out + small_cfg.lstm_hidden)
    g = m.package_embedding(u, make_graphs(packages), torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(g[0], m.item_vec[[0, 2, 5]].mean(0))
    torch.testing.assert_close(g[1], m.item_vec[9])


def test_unfitted_or_mismatched_raises(small_cfg, make_baseline, two_patients, corpus):
    m = make_baseline("package2vec", small_cfg, fit=False)
    assert isinstance(m, Package2vec) and not bool(m.fitted)
    with pytest.raises(RuntimeError, match="call fit_packages"):
        m.loss(two_patients.patients, two_patients.graphs, two_patients.owner, 1)
    with pytest.raises(ValueError, match="num_drugs 11 != the model's 10"):
        m.fit_packages(corpus, 11, seed=0)
    with pytest.raises(ValueError, match="package 1 has a drug id outside"):
        m.fit_packages([np.array([1, 2]), np.array([3, 10])], 10, seed=0)
