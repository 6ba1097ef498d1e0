"""BR baseline (``dpr_dist/models/baselines/br.py``): items + size + compatibility."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from dpr_dist.models.baselines import BR


def test_score_terms_match_their_definition(small_cfg, make_baseline, make_graphs, make_patients):
    m = make_baseline("br", small_cfg)
    assert isinstance(m, BR)
    packages = [np.array([0, 1, 2, 3]), np.array([5]), np.array([4, 9, 7]), np.array([8, 2])]
    graphs = make_graphs(packages)
    owner = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        u = m.encode(make_patients(2, 12, 10, 7, (1,), 4))
        t = m.terms(u, graphs, owner)
        score = m.score(u, graphs, owner)
        g = m.package_embedding(u, graphs, owner)
        for i, pkg in enumerate(packages):
            ids = torch.from_numpy(pkg)
            d, q, uo = m.drug_emb.weight[ids], m.compat_emb.weight[ids], u[owner[i]]
            torch.testing.assert_close(g[i], d.mean(0))
            torch.testing.assert_close(t["items"][i], m.user_proj(uo) @ d.mean(0))
            a, c = m.size_head(uo)
            ln = math.log(len(pkg))
            torch.testing.assert_close(t["size"][i], a * ln + c * ln**2)
            pairs = [q[x] @ q[y] for x, y in itertools.combinations(range(len(pkg)), 2)]
            compat = torch.stack(pairs).mean() if pairs else torch.tensor(0.0)
            torch.testing.assert_close(t["compat"][i], compat)
    torch.testing.assert_close(score, t["items"] + t["size"] + t["compat"])
    assert float(t["compat"][1]) == 0.0 and float(t["size"][1]) == 0.0  # one drug: log 1 = 0, no pair


def test_score_ignores_drug_order_and_edges(small_cfg, make_baseline, make_graphs, make_patients):
    m = make_baseline("br", small_cfg)
    u = m.encode(make_patients(1, 12, 10, 7, (), 4))
    a = make_graphs([np.array([3, 1, 7, 0])], seed=0)
    b = make_graphs([np.array([0, 7, 1, 3])], seed=1)  # other order, other edges
    owner = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(m.score(u, a, owner), m.score(u, b, owner))
