"""Helpers of the fast-path tests: random models, runs of both paths and their comparison."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch_geometric.data import Batch

from dpr_dist.models.batch import PatientBatch
from dpr_dist.models.dpr import DPR


def dpr(cfg, toy, name, layers, seed=0, dtype=torch.float32, spread=0.1, **settings):
    """A model with random parameters: Kaiming initialization plus noise (biases are zero there).
    ``settings`` override fields of the model config (``aggr="mean"``)."""
    torch.manual_seed(seed)
    m = DPR(replace(cfg, gnn_layers=layers, **settings), toy.num_drugs, toy.num_doc_words, toy.num_chars, name)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(spread * torch.randn_like(p))
    return m.to(dtype)


def with_duplicates(toy):
    """The toy batch with a patient's negatives repeating other packages (as sampling does)."""
    graphs = toy.graphs.to_data_list()
    group = 1 + toy.num_negatives
    graphs[2], graphs[group + 1] = graphs[0], graphs[2 * group]  # repeat positives as negatives
    return Batch.from_data_list(graphs)


def cast(toy, graphs, dtype):
    p = toy.patients
    graphs = graphs.clone()
    graphs.edge_w = graphs.edge_w.to(dtype)
    return PatientBatch(p.doc.to(dtype), p.note, p.note_len), graphs


def run(m, patients, graphs, owner, k, use_fast):
    """Loss, statistics, package embeddings, scores and every parameter's gradient."""
    m.fast = use_fast
    m.zero_grad()
    loss, stats = m.loss(patients, graphs, owner, k)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in m.named_parameters()}
    with torch.no_grad():
        u = m.encode(patients)
        g = m.package_embedding(u, graphs, owner)
        s = m.score(u, graphs, owner)
    return loss.detach(), stats, g, s, grads


def rel(a, b):
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def assert_same(fast_out, ref_out, tol, grad_tol=None, tied_pairs=0.0):
    """Both paths' outputs agree to ``tol``. ``tied_pairs``: the share of (positive, negative)
    pairs whose scores are equal in exact arithmetic (a positive repeated as its own
    negative); rounding orders those either way, so ``pair_acc`` may differ by that much."""
    (l1, st1, g1, s1, gr1), (l0, st0, g0, s0, gr0) = fast_out, ref_out
    assert rel(l1, l0) < tol
    assert set(st1) == set(st0)
    for key in st0:
        if key == "pair_acc":
            assert abs(float(st1[key]) - float(st0[key])) <= tied_pairs + 1e-6, (float(st1[key]), float(st0[key]))
            continue
        assert rel(st1[key].double(), st0[key].double()) < tol or float(st0[key]) == float(st1[key]) == 0
    assert rel(g1, g0) < tol and rel(s1, s0) < tol
    total = torch.cat([g.flatten() for g in gr0.values()]).norm()
    for name, g in gr0.items():
        assert gr1[name] is not None, name
        # Relative to the whole gradient: a parameter whose exact gradient is 0
        # (predict.2.bias cancels in the BPR difference) carries only rounding noise.
        assert float((gr1[name] - g).norm() / total) < (grad_tol or tol), name


def errors(out, truth):
    """Relative errors of ``run`` outputs against ``truth``: loss, g, scores, then per
    parameter relative to the whole gradient (a parameter whose exact gradient is 0,
    predict.2.bias, carries only rounding noise)."""
    total = torch.cat([g.flatten() for g in truth[4].values()]).norm()
    errs = [rel(out[0].double(), truth[0]), rel(out[2].double(), truth[2]), rel(out[3].double(), truth[3])]
    return errs + [float((out[4][n].double() - g).norm() / total) for n, g in truth[4].items()]
