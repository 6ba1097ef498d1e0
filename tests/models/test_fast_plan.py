"""Index maps of the fast path: merged packages (exactly), validation, device copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpr_dist.models import fast_plan
from dpr_dist.models.variants import VARIANTS
from fastcheck import assert_same, dpr, run, with_duplicates

UNMASKED = [n for n in sorted(VARIANTS) if not VARIANTS[n].has_mask]


@pytest.mark.parametrize("name", UNMASKED)
def test_unmasked_variants_embed_each_distinct_package_once(small_cfg, toy, name):
    graphs = with_duplicates(toy)
    m = dpr(small_cfg, toy, name, 1)
    plan = m.plan(graphs, toy.owner, len(toy.patients), toy.num_negatives)
    distinct = len({tuple(g.drug.tolist()) for g in graphs.to_data_list()})
    assert plan.num_reps == distinct < graphs.num_graphs
    assert_same(run(m, toy.patients, graphs, toy.owner, toy.num_negatives, True),
                run(m, toy.patients, graphs, toy.owner, toy.num_negatives, False), 1e-5)
    wg = dpr(small_cfg, toy, "wg", 1)  # masked variants embed every (patient, package)
    assert wg.plan(graphs, toy.owner, len(toy.patients)).num_reps == graphs.num_graphs


def test_hash_collisions_never_merge_different_packages(small_cfg, toy, monkeypatch):
    """Equal hashes are verified element-wise: with a constant hash every graph collides."""
    monkeypatch.setattr(fast_plan, "_mix", lambda x: np.zeros_like(x))
    graphs = with_duplicates(toy)
    m = dpr(small_cfg, toy, "gnn", 2)
    plan = m.plan(graphs, toy.owner, len(toy.patients))
    assert plan.num_reps < graphs.num_graphs  # graph 0's copy is still merged with it
    assert_same(run(m, toy.patients, graphs, toy.owner, toy.num_negatives, True),
                run(m, toy.patients, graphs, toy.owner, toy.num_negatives, False), 1e-5)


def test_explicit_plan_single_graph_and_device_copy(small_cfg, toy):
    m = dpr(small_cfg, toy, "ag", 1)
    u = m.encode(toy.patients)
    plan = m.plan(toy.graphs, toy.owner, 3)
    moved = plan.to("cpu")
    assert isinstance(moved, fast_plan.FastPlan) and torch.equal(moved.src, plan.src)
    torch.testing.assert_close(m.score(u, toy.graphs, toy.owner, plan=moved), m.score(u, toy.graphs, toy.owner))
    one = toy.graphs.get_example(4)  # a Data, no batch vector
    m.fast = False
    ref = m.score(u[:1], one, torch.zeros(1, dtype=torch.long))
    m.fast = True
    torch.testing.assert_close(m.score(u[:1], one, torch.zeros(1, dtype=torch.long)), ref)


def test_plan_errors_name_the_field(small_cfg, toy):
    m = dpr(small_cfg, toy, "ag", 1)
    k = toy.num_negatives
    with pytest.raises(ValueError, match=r"owner must be \[9\]"):
        m.plan(toy.graphs, toy.owner[:4], 3)
    with pytest.raises(ValueError, match=r"owner \(patient row per graph\): row 0 holds an id outside"):
        m.plan(toy.graphs, toy.owner + 5, 3)
    bad = toy.graphs.clone()
    bad.edge_index = bad.edge_index.clone()
    bad.edge_index[1, 3] = 10_000
    with pytest.raises(ValueError, match="edge_index: edge 3 names a node outside"):
        m.plan(bad, toy.owner, 3)
    bad = toy.graphs.clone()
    del bad.edge_rel
    with pytest.raises(ValueError, match=r"graphs.edge_rel must be \[E\]"):
        m.plan(bad, toy.owner, 3)
    bad = toy.graphs.clone()
    del bad.edge_w
    with pytest.raises(ValueError, match=r"graphs.edge_w must be \[E\]"):
        dpr(small_cfg, toy, "wg", 1).plan(bad, toy.owner, 3)
    plan = m.plan(toy.graphs, toy.owner, 3)  # a scoring plan cannot serve a loss
    with pytest.raises(ValueError, match="build it with num_negatives=2"):
        m.loss(toy.patients, toy.graphs, toy.owner, k, plan=plan)
    with pytest.raises(ValueError, match="plan was built for 3 patients"):
        m.score(m.encode(toy.patients)[:2], toy.graphs, toy.owner, plan=plan)
