"""DAM baseline (``dpr_dist/models/baselines/dam.py``): factorized attention over a package."""

from __future__ import annotations

import math

import numpy as np
import torch

from dpr_dist.models.baselines import DAM


def reference_embedding(m: DAM, pkg: np.ndarray) -> torch.Tensor:
    """The package embedding of one package, written out densely."""
    d = m.drug_emb.weight[torch.from_numpy(pkg)]
    att = torch.softmax(m.query(d) @ m.key(d).T / math.sqrt(m.query.out_features), dim=-1)
    h = d + att @ m.value(d)
    alpha = torch.softmax(m.pool_w(torch.tanh(m.pool(h))).squeeze(-1), dim=0)
    return alpha @ h


def test_batched_embedding_matches_per_package_reference(small_cfg, make_baseline, make_graphs):
    m = make_baseline("dam", small_cfg)
    assert isinstance(m, DAM)
    packages = [np.array([0, 1, 2, 3, 9]), np.array([5]), np.array([4, 7]), np.array([8, 2, 6])]
    graphs = make_graphs(packages)
    u = torch.zeros(1, small_cfg.mlp_out + small_cfg.lstm_hidden)
    with torch.no_grad():
        g = m.package_embedding(u, graphs, torch.zeros(4, dtype=torch.long))
        for i, pkg in enumerate(packages):  # padding of the shorter packages changes nothing
            torch.testing.assert_close(g[i], reference_embedding(m, pkg))
        torch.testing.assert_close(g[1], m.drug_emb.weight[5] + m.value(m.drug_emb.weight[5]))


def test_embedding_is_a_set_function(small_cfg, make_baseline, make_graphs):
    m = make_baseline("dam", small_cfg)
    u = torch.zeros(1, small_cfg.mlp_out + small_cfg.lstm_hidden)
    owner = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        a = m.package_embedding(u, make_graphs([np.array([3, 1, 7, 0])]), owner)
        b = m.package_embedding(u, make_graphs([np.array([0, 7, 1, 3])], seed=2), owner)
    torch.testing.assert_close(a, b)
