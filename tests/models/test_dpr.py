"""DPR-WG, DPR-AG, the GNN baseline and the ablations (eqs. 9-21, paper 5.2.2)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch

from dpr_dist.models.batch import graphs_from_packages
from dpr_dist.models.dpr import DPR
from dpr_dist.models.ncf import NCF
from dpr_dist.models.variants import VARIANTS

ALL = sorted(VARIANTS)
MASKED = ["wg", "wg_type", "ag", "ag_type"]  # the patient changes the package embedding
UNMASKED = ["gnn", "wg_context", "ag_mask"]

#: Sub-modules each variant must have / must not have (nothing unused is created).
PARTS = {"mask_mlp", "context_mlp", "context_a", "edge_mlp", "type_proj"}
EXPECTED_PARTS = {
    "gnn": set(),
    "wg": {"mask_mlp", "context_mlp", "context_a"},
    "wg_context": set(),
    "wg_type": {"mask_mlp", "context_mlp", "context_a"},
    "ag": {"mask_mlp", "edge_mlp", "type_proj"},
    "ag_mask": {"edge_mlp", "type_proj"},
    "ag_type": {"mask_mlp", "edge_mlp"},
}
#: Parameters with a zero gradient (up to rounding), per variant: the output bias of the
#: scoring MLP cancels in the BPR difference MLP([u||g_i]) - MLP([u||g_j]) (eq. 15).
EXPECTED_ZERO_GRAD = {name: {"predict.2.bias"} for name in ALL}


def model(cfg, toy, name, **overrides):
    torch.manual_seed(0)
    return DPR(replace(cfg, **overrides), toy.num_drugs, toy.num_doc_words, toy.num_chars, name)


def same_graph_twice(toy, k=0):
    g = toy.graphs.get_example(k)
    return Batch.from_data_list([g, g]), torch.tensor([0, 1])


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("name", ALL)
def test_shapes_and_finite_loss(small_cfg, toy, name, layers):
    m = model(small_cfg, toy, name, gnn_layers=layers)
    assert len(m.convs) == layers
    assert len({id(c.lin0.weight) for c in m.convs}) == layers  # each layer its own W0, W1, MLP
    u = m.encode(toy.patients)
    G = toy.graphs.num_graphs
    assert u.shape == (3, small_cfg.mlp_out + small_cfg.lstm_hidden)
    assert m.package_embedding(u, toy.graphs, toy.owner).shape == (G, small_cfg.drug_dim)
    assert m.score(u, toy.graphs, toy.owner).shape == (G,)
    loss, stats = m.loss(toy.patients, toy.graphs, toy.owner, toy.num_negatives)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert 0 <= stats["pair_acc"] <= 1 and torch.isfinite(stats["bpr"])
    assert ("ce" in stats) == VARIANTS[name].type_loss


@pytest.mark.parametrize("name", ALL)
def test_variant_has_exactly_its_parts(small_cfg, toy, name):
    m = model(small_cfg, toy, name)
    have = {n for n in PARTS if hasattr(m, n)}
    assert have == EXPECTED_PARTS[name]


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter(small_cfg, toy, name):
    m = model(small_cfg, toy, name, gnn_layers=2)
    assert toy.patients.note_len.min() == 0 < toy.patients.note_len.max()  # empty + real notes
    loss, _ = m.loss(toy.patients, toy.graphs, toy.owner, toy.num_negatives)
    loss.backward()
    zero = {n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().max() < 1e-6}
    assert zero == EXPECTED_ZERO_GRAD[name]
    assert all(p.grad is not None for p in m.parameters())  # all take part (DDP)


@pytest.mark.parametrize("name", MASKED)
def test_mask_personalizes_package_embedding(small_cfg, toy, name):
    m = model(small_cfg, toy, name)
    u = m.encode(toy.patients)[[0, 2]]  # two patients with different descriptions
    mask = m.mask(u)
    width = small_cfg.drug_dim if VARIANTS[name].graph == "wg" else small_cfg.edge_dim
    assert mask.shape == (2, width) and torch.all((mask > 0) & (mask < 1))
    assert not torch.allclose(mask[0], mask[1])
    graphs, owner = same_graph_twice(toy)
    g = m.package_embedding(u, graphs, owner)
    assert not torch.allclose(g[0], g[1])


@pytest.mark.parametrize("name", UNMASKED)
def test_ablations_without_mask_ignore_the_patient(small_cfg, toy, name):
    m = model(small_cfg, toy, name)
    u = m.encode(toy.patients)[[0, 2]]
    graphs, owner = same_graph_twice(toy)
    g = m.package_embedding(u, graphs, owner)
    torch.testing.assert_close(g[0], g[1])
    with pytest.raises(ValueError, match="has no mask layer"):
        m.mask(u)


@pytest.mark.parametrize("name", ["gnn", "wg_type", "ag", "ag_mask", "ag_type"])
def test_variants_without_initial_weights_ignore_edge_w(small_cfg, toy, name):
    m = model(small_cfg, toy, name)
    u = m.encode(toy.patients)
    g = m.package_embedding(u, toy.graphs, toy.owner)
    other = toy.graphs.clone()
    other.edge_w = torch.randn_like(other.edge_w)
    torch.testing.assert_close(m.package_embedding(u, other, toy.owner), g)


@pytest.mark.parametrize("name", ["wg", "wg_context"])
def test_weighted_variants_use_edge_w(small_cfg, toy, name):
    m = model(small_cfg, toy, name)
    u = m.encode(toy.patients)
    other = toy.graphs.clone()
    other.edge_w = -other.edge_w
    assert not torch.allclose(
        m.package_embedding(u, other, toy.owner), m.package_embedding(u, toy.graphs, toy.owner)
    )


@pytest.mark.parametrize("name", ["wg", "wg_type"])
def test_contextual_impact_factor(small_cfg, toy, name):
    """eqs. 9-10: c_vu = tanh(a^T MLP([d^_u || d^_v])), d^ = sigma(MLP(u)) * d; e^ = c * e."""
    m = model(small_cfg, toy, name)
    u = m.encode(toy.patients)[:1]
    graph = toy.graphs.get_example(0)
    out = m.explain(u, graph)
    c = out["c"]
    assert c.shape == (graph.edge_index.size(1),) and c.numel() > 0
    assert torch.all((c > -1) & (c < 1))
    d_hat = m.mask(u)[0] * m.drug_emb(graph.drug)
    v, w = graph.edge_index
    manual = torch.tanh(m.context_a(m.context_mlp(torch.cat([d_hat[w], d_hat[v]], -1)))).squeeze(-1)
    torch.testing.assert_close(c, manual)
    e = graph.edge_w if name == "wg" else torch.ones_like(graph.edge_w)
    torch.testing.assert_close(out["e"], e)
    torch.testing.assert_close(out["e_hat"], c * e)


def test_wg_context_edge_weights_are_the_initial_ones(small_cfg, toy):
    m = model(small_cfg, toy, "wg_context")
    graph = toy.graphs.get_example(1)
    out = m.explain(m.encode(toy.patients)[:1], graph)
    assert "c" not in out
    torch.testing.assert_close(out["e_hat"], graph.edge_w)


@pytest.mark.parametrize("name", ["ag", "ag_mask"])
def test_ag_edge_attributes_and_type_probabilities(small_cfg, toy, name):
    """eqs. 16-17 and Table 8: softmax(e^T Q) and softmax(e^^T Q)."""
    m = model(small_cfg, toy, name)
    u = m.encode(toy.patients)[1:2]
    graph = toy.graphs.get_example(0)
    out = m.explain(u, graph)
    d = m.drug_emb(graph.drug)
    v, w = graph.edge_index
    e = m.edge_mlp(torch.cat([d[v], d[w]], -1))
    torch.testing.assert_close(out["e"], e)
    e_hat = m.mask(u)[0] * e if name == "ag" else e
    torch.testing.assert_close(out["e_hat"], e_hat)
    assert m.Q.shape == (small_cfg.edge_dim, 3)
    torch.testing.assert_close(out["type_prob"], torch.softmax(e @ m.Q, -1))
    torch.testing.assert_close(out["type_prob_personal"], torch.softmax(e_hat @ m.Q, -1))
    torch.testing.assert_close(out["type_prob"].sum(-1), torch.ones(e.size(0)))
    assert torch.equal(out["edge_rel"], graph.edge_rel)


@pytest.mark.parametrize("name", ["wg", "wg_type", "ag", "ag_type"])
def test_edge_factors_of_many_graphs_equal_explain_of_each(small_cfg, toy, name):
    """One batched pass (the server's explanations) gives each graph's explain(), edge by edge."""
    m = model(small_cfg, toy, name)
    u = m.encode(toy.patients)
    owner = torch.arange(toy.graphs.num_graphs) % u.size(0)
    many = m.edge_factors(u, toy.graphs, owner)
    assert not any(t.requires_grad for t in many.values())
    start = 0
    for k in range(toy.graphs.num_graphs):
        graph = toy.graphs.get_example(k)
        one = m.explain(u[owner[k]].unsqueeze(0), graph)
        stop = start + graph.edge_index.size(1)
        for key, t in many.items():
            torch.testing.assert_close(t[start:stop], one[key])
        start = stop
    assert start == toy.graphs.edge_index.size(1) > 0


def test_explain_gnn_and_bad_input(small_cfg, toy):
    u = torch.zeros(1, small_cfg.mlp_out + small_cfg.lstm_hidden)
    with pytest.raises(ValueError, match="no edge attributes"):
        model(small_cfg, toy, "gnn").explain(u, toy.graphs.get_example(0))
    m = model(small_cfg, toy, "wg")
    with pytest.raises(ValueError, match="exactly one package graph"):
        m.explain(u, toy.graphs)
    with pytest.raises(ValueError, match=r"u must be \[1, D_u\]"):
        m.explain(u.expand(2, -1), toy.graphs.get_example(0))


def manual_ce(m, toy):
    """eq. 21's CE by hand: labelled edges of positive graphs, unmasked e, mean."""
    terms = []
    for i in range(len(toy.patients)):
        g = toy.graphs.get_example(i * (1 + toy.num_negatives))
        d = m.drug_emb(g.drug)
        e = m.edge_mlp(torch.cat([d[g.edge_index[0]], d[g.edge_index[1]]], -1))
        lab = g.edge_rel != -1
        terms.append(-F.log_softmax(e[lab] @ m.Q, -1).gather(1, g.edge_rel[lab, None]).squeeze(1))
    return torch.cat(terms).mean(), sum(t.numel() for t in terms)


@pytest.mark.parametrize("name", ["ag", "ag_mask"])
def test_type_cross_entropy_uses_labelled_positive_edges_only(small_cfg, toy, name):
    m = model(small_cfg, toy, name, ce_weight=0.5)
    loss, stats = m.loss(toy.patients, toy.graphs, toy.owner, toy.num_negatives)
    ce, n = manual_ce(m, toy)
    assert n > 0 and int(stats["ce_edges"]) == n
    torch.testing.assert_close(stats["ce"], ce.detach())
    torch.testing.assert_close(loss.detach(), stats["bpr"] + 0.5 * stats["ce"])

    # Labels of the negatives' edges do not matter.
    graph_of_edge = toy.graphs.batch[toy.graphs.edge_index[1]]
    negative = graph_of_edge % (1 + toy.num_negatives) != 0
    other = toy.graphs.clone()
    other.edge_rel = torch.where(negative, (other.edge_rel + 2) % 4 - 1, other.edge_rel)
    assert not torch.equal(other.edge_rel, toy.graphs.edge_rel)
    loss2, _ = m.loss(toy.patients, other, toy.owner, toy.num_negatives)
    torch.testing.assert_close(loss2, loss)

    # No labelled edge at all: zero CE, the loss is the BPR term.
    unlabelled = toy.graphs.clone()
    unlabelled.edge_rel = torch.full_like(unlabelled.edge_rel, -1)
    loss3, stats3 = m.loss(toy.patients, unlabelled, toy.owner, toy.num_negatives)
    assert float(stats3["ce"]) == 0 and int(stats3["ce_edges"]) == 0
    torch.testing.assert_close(loss3, stats3["bpr"])


def test_ag_type_has_no_cross_entropy(small_cfg, toy):
    m = model(small_cfg, toy, "ag_type")
    loss, stats = m.loss(toy.patients, toy.graphs, toy.owner, toy.num_negatives)
    assert "ce" not in stats
    torch.testing.assert_close(loss.detach(), stats["bpr"])


def test_bpr_is_mean_over_pairs(small_cfg, toy):
    m = model(small_cfg, toy, "wg")
    loss, _ = m.loss(toy.patients, toy.graphs, toy.owner, toy.num_negatives)
    s = m.score(m.encode(toy.patients), toy.graphs, toy.owner).view(3, 1 + toy.num_negatives)
    manual = torch.stack(
        [-F.logsigmoid(s[i, 0] - s[i, j]) for i in range(3) for j in range(1, 1 + toy.num_negatives)]
    ).mean()  # eq. 15
    torch.testing.assert_close(loss, manual)
    assert torch.equal(m(toy.patients, toy.graphs, toy.owner, toy.num_negatives)[0], loss)


def test_layout_errors(small_cfg, toy):
    m = model(small_cfg, toy, "ag")
    with pytest.raises(ValueError, match=r"expected 3 patients x \(1 \+ 1\) = 6 graphs, got 9"):
        m.loss(toy.patients, toy.graphs, toy.owner, 1)
    with pytest.raises(ValueError, match="patient-major"):
        m.loss(toy.patients, toy.graphs, toy.owner.flip(0), toy.num_negatives)
    bad = toy.graphs.clone()
    bad.drug = bad.drug.clone()
    bad.drug[4] = toy.num_drugs
    with pytest.raises(ValueError, match=r"graphs.drug \(node\): row 4 holds an id outside"):
        m.loss(toy.patients, bad, toy.owner, toy.num_negatives)
    bad = toy.graphs.clone()
    bad.edge_rel = bad.edge_rel.clone()
    bad.edge_rel[2] = 3
    with pytest.raises(ValueError, match="edge_rel: edge 2 is not one of"):
        m.loss(toy.patients, bad, toy.owner, toy.num_negatives)


@pytest.mark.parametrize("name", ALL)
def test_two_records_overfit(small_cfg, toy_factory, name):
    """Two patients, each with its own package, each other's package as the negative."""
    toy = toy_factory(batch=2, num_negatives=1, seed=5, empty_rows=(0,), sizes=(4, 6))
    pos = toy.graphs.get_example(0), toy.graphs.get_example(2)
    graphs = Batch.from_data_list([pos[0], pos[1], pos[1], pos[0]])
    m = model(small_cfg, toy, name)
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    for _ in range(200):
        loss, stats = m.loss(toy.patients, graphs, toy.owner, 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(stats["bpr"]) < 0.01
    assert float(stats["pair_acc"]) == 1.0


def test_empty_graph_and_single_node(small_cfg, toy):
    relation = np.full((toy.num_drugs, toy.num_drugs), -1, dtype=np.int8)
    packages = [np.array([3]), np.array([1, 4])]
    graphs = graphs_from_packages(packages, relation, np.zeros_like(toy.cooc), 0.5)
    assert graphs.edge_index.size(1) == 0
    for name in ALL:
        m = model(small_cfg, toy, name)
        s = m.score(m.encode(toy.patients), graphs, torch.tensor([0, 2]))
        assert torch.isfinite(s).all()


def test_load_pretrained_copies_encoder_and_drugs(small_cfg, toy):
    torch.manual_seed(1)
    ncf = NCF(small_cfg, toy.num_drugs, toy.num_doc_words, toy.num_chars)
    m = model(small_cfg, toy, "ag")
    assert not torch.equal(m.drug_emb.weight, ncf.drug_emb.weight)
    m.load_pretrained(ncf)
    torch.testing.assert_close(m.drug_emb.weight, ncf.drug_emb.weight)
    torch.testing.assert_close(m.encode(toy.patients), ncf.encode(toy.patients))
    m.drug_emb.weight.data.add_(1.0)  # a copy, not shared storage: fine-tuning is DPR's own
    assert not torch.equal(m.drug_emb.weight, ncf.drug_emb.weight)
    other = NCF(replace(small_cfg, drug_dim=small_cfg.drug_dim + 1), toy.num_drugs, toy.num_doc_words,
                toy.num_chars)
    with pytest.raises(ValueError, match="drug_emb.weight is"):
        m.load_pretrained(other)
