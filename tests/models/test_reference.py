"""The reference forward pass of DPR (dpr_dist/models/reference.py): eqs. 15 and 21 by hand.

tests/models/test_fast.py checks that the fast path computes the same function; these
check the reference itself where tests/models/test_dpr.py goes through the fast path.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from dpr_dist.models import reference
from dpr_dist.models.dpr import DPR


def reference_model(cfg, toy, name, **overrides):
    torch.manual_seed(0)
    m = DPR(replace(cfg, fast=False, **overrides), toy.num_drugs, toy.num_doc_words, toy.num_chars, name)
    assert not m.fast
    return m


@pytest.mark.parametrize("name", ["gnn", "wg", "ag"])
def test_loss_is_mean_bpr_over_pairs(small_cfg, toy, name):
    """eq. 15: -ln sigma(s_pos - s_neg), averaged over the B * K pairs."""
    m = reference_model(small_cfg, toy, name, ce_weight=0.0)
    loss, stats = reference.loss(m, toy.patients, toy.graphs, toy.owner, toy.num_negatives)
    u = m.encode(toy.patients)
    g, _ = reference.forward_graphs(m, u, toy.graphs, toy.owner)
    s = m.predict(torch.cat([u[toy.owner], g], -1)).squeeze(-1).view(len(toy.patients), -1)
    pairs = [s[i, 0] - s[i, j] for i in range(s.size(0)) for j in range(1, s.size(1))]
    torch.testing.assert_close(stats["bpr"], -F.logsigmoid(torch.stack(pairs)).mean().detach())
    torch.testing.assert_close(stats["pair_acc"], (torch.stack(pairs) > 0).float().mean())
    torch.testing.assert_close(m.loss(toy.patients, toy.graphs, toy.owner, toy.num_negatives)[0], loss)


def test_type_loss_counts_labelled_edges_of_positive_graphs(small_cfg, toy):
    """eq. 21: the CE over the labelled edges of the positive packages, with the unmasked e."""
    m = reference_model(small_cfg, toy, "ag", ce_weight=0.5)
    u = m.encode(toy.patients)
    _, aux = reference.forward_graphs(m, u, toy.graphs, toy.owner)
    group = 1 + toy.num_negatives
    ce, n = reference.type_loss(m, aux["e"], toy.graphs, group)
    terms = []
    for i in range(len(toy.patients)):
        g = toy.graphs.get_example(i * group)
        d = m.drug_emb(g.drug)
        e = m.edge_mlp(torch.cat([d[g.edge_index[0]], d[g.edge_index[1]]], -1))
        lab = g.edge_rel != -1
        terms.append(-F.log_softmax(e[lab] @ m.Q, -1).gather(1, g.edge_rel[lab, None]).squeeze(1))
    by_hand = torch.cat(terms)
    assert int(n) == by_hand.numel() > 0
    torch.testing.assert_close(ce, by_hand.mean())
    loss, stats = reference.loss(m, toy.patients, toy.graphs, toy.owner, toy.num_negatives)
    torch.testing.assert_close(loss, stats["bpr"] + 0.5 * ce)


def test_layout_errors_name_the_field(small_cfg, toy):
    m = reference_model(small_cfg, toy, "wg")
    with pytest.raises(ValueError, match=r"expected 3 patients x \(1 \+ 1\) = 6 graphs, got 9"):
        reference.loss(m, toy.patients, toy.graphs, toy.owner, 1)
    with pytest.raises(ValueError, match="patient-major"):
        reference.loss(m, toy.patients, toy.graphs, toy.owner.flip(0), toy.num_negatives)
    bad = toy.graphs.clone()
    bad.edge_w = bad.edge_w[:-1]
    with pytest.raises(ValueError, match=r"graphs.edge_w must be \[E\]"):
        reference.forward_graphs(m, m.encode(toy.patients), bad, toy.owner)
