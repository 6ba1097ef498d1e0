"""The interaction-type cross-entropy over the pairs of R (``model.type_targets: relation``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpr_dist.config import ModelConfig
from dpr_dist.data.graphs import PairTable
from dpr_dist.eval.interaction_types import type_head_metrics
from dpr_dist.models.dpr import DPR
from dpr_dist.models.type_targets import relation_pairs, relation_type_loss, set_type_pairs, warm_up_types


def pair_table(dense: np.ndarray) -> PairTable:
    """``R`` as a PairTable, keeping its -1 entries (relation_pairs must drop them)."""
    keys = np.arange(dense.size, dtype=np.int64)
    return PairTable(dense.shape[0], keys, dense.reshape(-1).astype(np.int8))


def build(cfg: ModelConfig, toy, name: str = "ag", **changes) -> DPR:
    torch.manual_seed(0)
    return DPR(replace(cfg, **changes), toy.num_drugs, toy.num_doc_words, toy.num_chars, name)


def test_relation_pairs_are_the_labelled_pairs(toy):
    src, dst, rel = relation_pairs(pair_table(toy.relation))
    want = np.argwhere(toy.relation >= 0)  # row-major = sorted keys v * M + u
    np.testing.assert_array_equal(src, want[:, 0])
    np.testing.assert_array_equal(dst, want[:, 1])
    np.testing.assert_array_equal(rel, toy.relation[want[:, 0], want[:, 1]])
    assert set(np.unique(rel)) == {0, 1, 2}


def test_config_rejects_unknown_targets():
    with pytest.raises(ValueError, match="type_targets='edges'"):
        ModelConfig(type_targets="edges")
    with pytest.raises(ValueError, match="type_pairs=0"):
        ModelConfig(type_pairs=0)


@pytest.mark.parametrize("fast", [True, False])
def test_loss_uses_every_pair_of_r(small_cfg, toy, fast):
    """The CE term equals a hand computation over R's labelled pairs, not the graph edges."""
    model = build(small_cfg, toy, type_targets="relation", fast=fast)
    n = set_type_pairs(model, pair_table(toy.relation))
    src, dst, rel = (torch.as_tensor(a) for a in relation_pairs(pair_table(toy.relation)))
    assert n == rel.numel() < model.type_pairs  # every pair, none sampled
    _, stats = model.loss(toy.patients, toy.graphs, toy.owner, toy.num_negatives)
    d = model.drug_emb.weight
    want = F.cross_entropy(model.type_proj(model.edge_mlp(torch.cat([d[src], d[dst]], -1))), rel)
    assert int(stats["ce_edges"]) == n
    torch.testing.assert_close(stats["ce"], want.detach())
    graph_model = build(small_cfg, toy, fast=fast)  # the paper's: labelled positive edges only
    _, graph_stats = graph_model.loss(toy.patients, toy.graphs, toy.owner, toy.num_negatives)
    assert int(graph_stats["ce_edges"]) < n


def test_fast_and_reference_losses_agree(small_cfg, toy):
    losses = []
    for fast in (True, False):
        model = build(small_cfg, toy, type_targets="relation", fast=fast)
        set_type_pairs(model, pair_table(toy.relation))
        losses.append(model.loss(toy.patients, toy.graphs, toy.owner, toy.num_negatives)[0])
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)


def test_sampled_pairs_and_errors(small_cfg, toy):
    model = build(small_cfg, toy, type_targets="relation", type_pairs=16)
    with pytest.raises(ValueError, match="set_type_pairs"):
        model.loss(toy.patients, toy.graphs, toy.owner, toy.num_negatives)
    set_type_pairs(model, pair_table(toy.relation))
    _, n = relation_type_loss(model)
    assert int(n) == 16
    with pytest.raises(ValueError, match="no interaction-type loss"):
        set_type_pairs(build(small_cfg, toy, name="wg"), pair_table(toy.relation))
    with pytest.raises(ValueError, match="over 5 drugs"):
        set_type_pairs(model, pair_table(np.zeros((5, 5), np.int8)))


def test_warm_up_teaches_every_type_deterministically(small_cfg, toy):
    """Steps on the relation term alone lift the type head from chance to (nearly) all types
    right, the same on every call (so every rank warms up alike)."""
    table = pair_table(toy.relation)
    heads = []
    for _ in range(2):
        model = build(small_cfg, toy, type_targets="relation", type_warmup=300)
        set_type_pairs(model, table)
        before = type_head_metrics(model, table)
        drugs = model.drug_emb.weight.detach().clone()
        ce0, ce1 = warm_up_types(model, 300, lr=0.01)
        assert torch.equal(model.drug_emb.weight, drugs)  # NCF's drug embeddings are left alone
        heads.append(model.type_proj.weight.detach().clone())
        after = type_head_metrics(model, table)
        assert before["type_balanced_accuracy"] < 0.6 and ce1 < 0.2 * ce0
        assert after["type_balanced_accuracy"] > 0.9
        assert min(after[f"type_recall_{t}"] for t in ("none", "synergism", "antagonism")) > 0.8
        assert all(p.grad is None for p in model.parameters())  # nothing left for the first training step
    torch.testing.assert_close(heads[0], heads[1], rtol=0, atol=0)


def test_warm_up_needs_the_relation_targets():
    with pytest.raises(ValueError, match="type_warmup=10 must be >= 0, and 0 unless type_targets is 'relation'"):
        ModelConfig(type_warmup=10)
    assert ModelConfig(type_targets="relation", type_warmup=10).type_warmup == 10
