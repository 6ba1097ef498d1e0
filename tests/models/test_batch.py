"""Model inputs: PatientBatch and graphs_from_packages (paper 4.2.1, 4.3.1)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from dpr_dist.models.batch import PatientBatch, graphs_from_packages


def brute_force_edges(pkg, relation, cooc, threshold):
    """The two criteria of paper 4.2.1, one ordered pair at a time."""
    edges = {}
    for i, v in enumerate(pkg):
        for j, u in enumerate(pkg):
            if i != j and (relation[v, u] != -1 or cooc[v, u] > threshold):
                r, p = int(relation[v, u]), float(cooc[v, u])
                w = 1.0 if r == 1 else -1.0 if r == 2 else p
                edges[(int(v), int(u))] = (r, p, w)
    return edges


@pytest.mark.parametrize("sparse", [False, True])
def test_graphs_have_exactly_the_edges_of_the_two_criteria(toy, sparse):
    cooc = sp.csr_matrix(toy.cooc) if sparse else toy.cooc
    graphs = graphs_from_packages(toy.packages, toy.relation, cooc, toy.threshold)
    assert graphs.num_graphs == len(toy.packages)
    total = 0
    for k, pkg in enumerate(toy.packages):
        g = graphs.get_example(k)
        assert torch.equal(g.drug, torch.from_numpy(pkg))
        src, dst = g.drug[g.edge_index[0]].tolist(), g.drug[g.edge_index[1]].tolist()
        got = {
            (v, u): (int(r), float(p), float(w))
            for v, u, r, p, w in zip(src, dst, g.edge_rel, g.edge_p, g.edge_w)
        }
        assert len(got) == g.edge_index.size(1)  # no duplicate edge
        want = brute_force_edges(pkg, toy.relation, toy.cooc, toy.threshold)
        assert got.keys() == want.keys()
        for key, (r, p, w) in want.items():
            assert got[key][0] == r
            assert got[key][1] == pytest.approx(p, rel=1e-6)
            assert got[key][2] == pytest.approx(w, rel=1e-6)
        total += len(want)
    assert total > 0
    assert graphs.edge_rel.dtype == torch.int64 and graphs.edge_w.dtype == torch.float32
    assert graphs.edge_p.dtype == torch.float32 and graphs.drug.dtype == torch.int64


def test_threshold_is_strict_and_labelled_pairs_always_connect():
    relation = np.full((4, 4), -1, dtype=np.int8)
    relation[2, 3] = 0  # labelled "no interaction": still an edge, weight p
    cooc = np.zeros((4, 4))
    cooc[0, 1] = 0.05  # == threshold: no edge
    cooc[1, 0] = 0.06  # > threshold: edge
    cooc[2, 3] = 0.01
    g = graphs_from_packages([np.array([0, 1, 2, 3])], relation, cooc, 0.05)
    pairs = sorted(zip(g.edge_index[0].tolist(), g.edge_index[1].tolist()))
    assert pairs == [(1, 0), (2, 3)]
    assert g.edge_w.tolist() == pytest.approx([0.06, 0.01])


def test_single_drug_package_has_no_edge():
    relation = np.zeros((3, 3), dtype=np.int8)
    g = graphs_from_packages([np.array([2]), np.array([0, 1])], relation, np.zeros((3, 3)), 0.01)
    assert g.get_example(0).edge_index.shape == (2, 0)
    assert g.get_example(1).edge_index.size(1) == 2


def test_bad_packages_are_named():
    relation = np.zeros((3, 3), dtype=np.int8)
    cooc = np.zeros((3, 3))
    with pytest.raises(ValueError, match="package 1 repeats a drug"):
        graphs_from_packages([np.array([0]), np.array([1, 1])], relation, cooc, 0.01)
    with pytest.raises(ValueError, match=r"package 0 has a drug id outside \[0, 3\)"):
        graphs_from_packages([np.array([3])], relation, cooc, 0.01)
    with pytest.raises(ValueError, match="package 0 is empty"):
        graphs_from_packages([np.array([], dtype=np.int64)], relation, cooc, 0.01)
    with pytest.raises(ValueError, match="cooc must be"):
        graphs_from_packages([np.array([0])], relation, np.zeros((2, 2)), 0.01)


def test_patient_batch_to_and_validation():
    long2 = torch.zeros(2, dtype=torch.long)
    p = PatientBatch(torch.zeros(2, 4), torch.zeros(2, 3, dtype=torch.long), long2)
    q = p.to("cpu")
    assert isinstance(q, PatientBatch) and len(q) == 2 and torch.equal(q.doc, p.doc)
    if torch.cuda.is_available():
        assert p.pin_memory().doc.is_pinned()
    with pytest.raises(ValueError, match=r"PatientBatch.note: expected \[2, L\]"):
        PatientBatch(torch.zeros(2, 4), torch.zeros(3, 3, dtype=torch.long), long2)
    with pytest.raises(ValueError, match=r"PatientBatch.doc: expected \[B, V_doc\]"):
        PatientBatch(torch.zeros(4), torch.zeros(4, 3, dtype=torch.long), torch.zeros(4).long())
