"""The type head's check against R (``type_*`` metrics of DPR-AG)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpr_dist.eval.evaluate import evaluate_models
from dpr_dist.eval.interaction_types import has_type_head, type_head_metrics, type_predictions
from dpr_dist.models.type_targets import relation_pairs
from toy_bundles import toy_bundle, toy_records


def test_metrics_match_a_hand_count():
    b = toy_bundle("ag")
    src, dst, rel = relation_pairs(b.relation)
    with torch.no_grad():  # e = 1 for every pair and logits e^T Q = (0, 0, 1): always "antagonism"
        b.model.edge_mlp[-1].weight.zero_()
        b.model.edge_mlp[-1].bias.fill_(1.0)
        b.model.type_proj.weight.zero_()
        b.model.type_proj.weight[2, 0] = 1.0
    pred = type_predictions(b.model, src, dst)
    assert (pred == 2).all()
    m = type_head_metrics(b.model, b.relation)
    counts = np.bincount(rel, minlength=3)
    assert m["type_pairs"] == rel.size
    assert m["type_accuracy"] == pytest.approx(counts[2] / rel.size)
    assert m["type_majority_accuracy"] == pytest.approx(counts.max() / rel.size)
    assert (m["type_recall_none"], m["type_recall_synergism"], m["type_recall_antagonism"]) == (0.0, 0.0, 1.0)
    assert m["type_balanced_accuracy"] == pytest.approx(1 / 3)


def test_only_models_with_a_type_head():
    assert has_type_head(toy_bundle("ag").model) and has_type_head(toy_bundle("ag_mask").model)
    for name in ("ag_type", "wg", "gnn"):
        assert not has_type_head(toy_bundle(name).model)
    with pytest.raises(ValueError, match="no interaction-type head"):
        type_head_metrics(toy_bundle("wg").model, toy_bundle("wg").relation)


def test_evaluate_reports_the_type_head_for_ag_only():
    q = toy_records(11, 3, "Q")
    metrics, _ = evaluate_models(toy_bundle("ag"), q, ["ag", "ncf"])
    assert metrics["ag"]["type_pairs"] == relation_pairs(toy_bundle("ag").relation)[2].size
    assert 0 <= metrics["ag"]["type_balanced_accuracy"] <= 1
    assert not any(k.startswith("type_") for k in metrics["ncf"])
    wg, _ = evaluate_models(toy_bundle("wg"), q, ["wg"])
    assert not any(k.startswith("type_") for k in wg["wg"])
