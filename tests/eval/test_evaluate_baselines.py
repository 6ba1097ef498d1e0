"""Evaluation of model directories holding a package baseline: scored like DPR, NN by the tie rule."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dpr_dist.eval.evaluate import encode_records, evaluate_models, score_candidates
from toy_bundles import V, toy_bundle, toy_records


def test_trained_nn_picks_the_nearest_neighbour_like_the_builtin():
    q = toy_records(19, 3, "Q")
    nn = toy_bundle("nn")
    ours, pred = evaluate_models(nn, q, ["nn"])  # the NN model, scored like DPR
    builtin, ref = evaluate_models(toy_bundle("br"), q, ["nn"])  # the evaluator's own NN on the same index
    assert pred["drugs"].to_pylist() == ref["drugs"].to_pylist()
    assert ours["nn"]["f1"] == builtin["nn"]["f1"] and ours["nn"]["ceiling_f1"] is not None
    first = nn.index.query(encode_records(nn.ncf.encode, q, V), k=5).packages
    assert pred["drug_ids"].to_pylist() == [p[0].tolist() for p in first]


@pytest.mark.parametrize("name", ["package2vec", "lda", "br", "dam"])
def test_baseline_bundles_evaluate_like_dpr(name):
    b, q = toy_bundle(name), toy_records(13, 4, "Q")
    metrics, pred = evaluate_models(b, q, [name, "ncf"])
    assert list(metrics) == [name, "ncf"] and pred.num_rows == 2 * 13
    assert 0 <= metrics[name]["f1"] <= metrics[name]["ceiling_f1"] <= 1
    cands = b.index.query(encode_records(b.ncf.encode, q, V), k=5)
    u = encode_records(b.model.encode, q, V)
    big = score_candidates(b.model, u, cands, b.relation, b.cooc, b.threshold, queries_per_call=100)
    one = score_candidates(b.model, u, cands, b.relation, b.cooc, b.threshold, queries_per_call=1)
    np.testing.assert_allclose(big, one, rtol=1e-5, atol=1e-6)
    _, best = cands.pick(big)
    picked = pred.filter(pa.compute.equal(pred["model"], name))["drug_ids"].to_pylist()
    assert picked == [p.tolist() for p in best]  # the best-scoring candidate of each query
