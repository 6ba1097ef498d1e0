"""LDA baseline (``dpr_dist/models/baselines/lda.py``): topic proportions of packages."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.decomposition import LatentDirichletAllocation

from dpr_dist.models.baselines import LDA


def multihot(packages: list[np.ndarray], num_drugs: int) -> sp.csr_array:
    lengths = [len(p) for p in packages]
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return sp.csr_array((np.ones(indptr[-1]), np.concatenate(packages), indptr), shape=(len(packages), num_drugs))


def test_topics_match_scikit_learn(small_cfg, make_baseline, make_graphs, corpus):
    m = make_baseline("lda", small_cfg)  # max_iter=3, seed 0, on `corpus`
    ref = LatentDirichletAllocation(n_components=small_cfg.drug_dim, learning_method="batch", max_iter=3,
                                    random_state=0).fit(multihot(corpus, 10))
    np.testing.assert_allclose(m.exp_word_topic.numpy(), ref.exp_dirichlet_component_.T, rtol=1e-5)
    assert float(m.doc_topic_prior) == pytest.approx(1 / small_cfg.drug_dim)
    rng = np.random.default_rng(1)
    unseen = [np.sort(rng.choice(10, size=int(rng.integers(1, 7)), replace=False)) for _ in range(30)]
    theta = m.topics(make_graphs(unseen)).numpy()
    np.testing.assert_allclose(theta, ref.transform(multihot(unseen, 10)), atol=2e-3)
    np.testing.assert_allclose(theta.sum(1), 1.0, rtol=1e-5)


def test_fit_is_deterministic_given_the_seed(small_cfg, make_baseline, corpus):
    a = make_baseline("lda", small_cfg, fit=False, max_iter=2)
    b = make_baseline("lda", small_cfg, seed=4, fit=False, max_iter=2)
    a.fit_packages(corpus, 10, seed=5)
    b.fit_packages(corpus, 10, seed=5)
    assert bool(a.fitted) and torch.equal(a.exp_word_topic, b.exp_word_topic)
    b.fit_packages(corpus, 10, seed=6)
    assert not torch.equal(a.exp_word_topic, b.exp_word_topic)


def test_subsample_cap_is_seeded(small_cfg, make_baseline, corpus):
    a = make_baseline("lda", small_cfg, fit=False, max_iter=2, max_fit_packages=50)
    a.fit_packages(corpus, 10, seed=5)
    keep = np.sort(np.random.default_rng(5).choice(len(corpus), size=50, replace=False))
    ref = LatentDirichletAllocation(n_components=small_cfg.drug_dim, max_iter=2, random_state=5)
    ref.fit(multihot([corpus[i] for i in keep], 10))
    np.testing.assert_allclose(a.exp_word_topic.numpy(), ref.exp_dirichlet_component_.T, rtol=1e-5)


def test_co_prescribed_drugs_get_similar_topics(small_cfg, make_baseline, make_graphs):
    m = make_baseline("lda", replace(small_cfg, drug_dim=2))  # 2 topics: drugs 0-3 and drugs 4-7
    theta = m.topics(make_graphs([np.array([d]) for d in range(8)]))  # one package per drug
    sim = F.normalize(theta, dim=1) @ F.normalize(theta, dim=1).T
    same = torch.tensor([[sim[i, j] for j in g if j != i] for g in ([0, 1, 2, 3], [4, 5, 6, 7]) for i in g])
    assert same.min() > sim[:4, 4:8].max()


def test_unfitted_or_mismatched_raises(small_cfg, make_baseline, two_patients, corpus):
    m = make_baseline("lda", small_cfg, fit=False)
    assert isinstance(m, LDA) and not bool(m.fitted)
    with pytest.raises(RuntimeError, match="call fit_packages"):
        m.score(m.encode(two_patients.patients), two_patients.graphs, two_patients.owner)
    with pytest.raises(ValueError, match="num_drugs 9 != the model's 10"):
        m.fit_packages(corpus, 9, seed=0)
    with pytest.raises(ValueError, match="package 0 must be a non-empty"):
        m.fit_packages([np.array([], dtype=np.int64)], 10, seed=0)
