"""Evaluation of a model directory: batched candidate scoring, baselines, metrics, predictions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from dpr_dist.config import Config, DataConfig, EvalConfig, ModelConfig
from dpr_dist.data.documents import NOTE_VOCAB_SIZE
from dpr_dist.data.graphs import PairTable
from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.eval.evaluate import (
    candidate_graphs, encode_records, evaluate, evaluate_models, format_table, pick_packages, score_candidates)
from dpr_dist.eval.metrics import package_prf
from dpr_dist.eval.package_csr import PackageCSR
from dpr_dist.models.batch import graphs_from_packages
from dpr_dist.models.dpr import DPR
from dpr_dist.models.ncf import NCF
from dpr_dist.train.collate import package_csr
from dpr_dist.train.modeldir import ModelBundle, load_model_dir, save_model_dir

M, V = 25, 9
MODEL = ModelConfig(name="ag", mlp_out=8, char_dim=6, lstm_hidden=8, drug_dim=16, hidden=24, edge_dim=8)


def toy_records(n: int, seed: int, prefix: str) -> pa.Table:
    """``n`` records in the prepared layout over ``M`` drugs and ``V`` document words."""
    rng = np.random.default_rng(seed)
    drugs = [np.sort(rng.choice(M, int(rng.integers(2, 7)), replace=False)) for _ in range(n)]
    docs = [np.sort(rng.choice(V, int(rng.integers(1, 4)), replace=False)) for _ in range(n)]
    notes = [rng.integers(1, NOTE_VOCAB_SIZE, int(rng.integers(0, 15))) for _ in range(n)]
    return pa.table({
        "record_id": [f"{prefix}{i:03d}" for i in range(n)],
        "doc_ids": pa.array([d.tolist() for d in docs], pa.list_(pa.int32())),
        "note": pa.array([x.tolist() for x in notes], pa.list_(pa.int8())),
        "drug_ids": pa.array([d.tolist() for d in drugs], pa.list_(pa.int32())),
    })


def toy_tables(seed: int = 0) -> tuple[PairTable, PairTable]:
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(0, M * M, 150))
    keys = keys[keys // M != keys % M]
    relation = PairTable(M, keys[::4], rng.integers(0, 3, len(keys[::4])).astype(np.int8))
    cooc = PairTable(M, keys, (rng.random(len(keys)) * 0.3).astype(np.float32))
    return relation, cooc


def toy_bundle(variant: str = "ag", seed: int = 0, n_train: int = 60) -> ModelBundle:
    torch.manual_seed(seed)
    ncf = NCF(MODEL, M, V, NOTE_VOCAB_SIZE).eval()
    model = DPR(MODEL, M, V, NOTE_VOCAB_SIZE, variant).eval() if variant != "ncf" else None
    train = toy_records(n_train, seed, "T")
    with torch.no_grad():
        index = CandidateIndex(encode_records(ncf.encode, train, V), package_csr(train),
                               train["record_id"].to_pylist())
    relation, cooc = toy_tables(seed)
    counts = np.bincount(package_csr(train).indices, minlength=M)
    drugs = pa.table({"id": np.arange(M, dtype=np.int32), "name": [f"drug{i}" for i in range(M)],
                      "train_count": counts, "aligned": np.ones(M, bool)})
    cfg = Config(data=DataConfig(threshold=0.05), model=MODEL, eval=EvalConfig(neighbors=5, batch_size=7))
    info = {"num_drugs": M, "num_doc_words": V, "threshold": 0.05, "top_k": 4, "model": variant}
    return ModelBundle(path="mem", cfg=cfg, model_name=variant, ncf=ncf, model=model, drugs=drugs,
                       doc_words=pa.table({"id": np.arange(V, dtype=np.int32), "token": [f"w{i}" for i in range(V)],
                                           "train_count": np.ones(V, np.int64)}),
                       relation=relation, cooc=cooc, index=index, manifest={}, metrics={}, info=info)


def test_candidate_graphs_match_reference_builder():
    relation, cooc = toy_tables(1)
    pkgs = [np.array([1, 5, 7]), np.array([2, 3]), np.array([0, 4, 9, 11])]
    csr = PackageCSR(np.array([0, 3, 5, 9]), np.concatenate(pkgs))
    mine = candidate_graphs(csr, relation, cooc, 0.05)
    ref = graphs_from_packages(pkgs, relation.dense(), cooc.dense(), 0.05)

    def edges(g):
        s, d = g.edge_index
        return sorted(zip(g.batch[s].tolist(), g.drug[s].tolist(), g.drug[d].tolist(), g.edge_rel.tolist(),
                          g.edge_w.tolist()))

    assert len(edges(mine)) > 0 and edges(mine) == edges(ref)
    assert torch.equal(mine.drug, ref.drug) and mine.num_graphs == 3


@pytest.mark.parametrize("variant", ["ag", "wg"])
def test_batched_scoring_equals_one_query_at_a_time(variant):
    b = toy_bundle(variant)
    q = toy_records(11, 5, "Q")
    u_ncf = encode_records(b.ncf.encode, q, V)
    cands = b.index.query(u_ncf, k=5)
    u = encode_records(b.model.encode, q, V)
    big = score_candidates(b.model, u, cands, b.relation, b.cooc, b.threshold, queries_per_call=100)
    one = score_candidates(b.model, u, cands, b.relation, b.cooc, b.threshold, queries_per_call=1)
    assert big.shape == (int(cands.valid.sum()),)
    np.testing.assert_allclose(big, one, rtol=1e-5, atol=1e-6)
    picked = pick_packages(b.model, u, cands, b.relation, b.cooc, b.threshold, 3)
    for i, pkg in enumerate(picked):  # the pick is one of the query's candidates
        assert any(np.array_equal(pkg, c) for c in cands.packages[i])


def test_evaluate_package_model_metrics_and_predictions():
    b = toy_bundle("ag")
    q = toy_records(23, 6, "Q")
    metrics, pred = evaluate(b, q)
    assert metrics["model"] == "ag" and metrics["n"] == 23
    assert pred.column_names == ["record_id", "model", "drugs", "drug_ids"] and pred.num_rows == 23
    assert pred["record_id"].to_pylist() == q["record_id"].to_pylist()
    ids = [np.array(x) for x in pred["drug_ids"].to_pylist()]
    assert pred["drugs"].to_pylist()[0] == [f"drug{i}" for i in ids[0]]
    f1 = package_prf(ids, package_csr(q))["f1"].mean()
    assert metrics["f1"] == pytest.approx(f1)
    assert 0 <= metrics["f1"] <= metrics["ceiling_f1"] <= 1 and metrics["f1_of_ceiling"] <= 1


def test_baselines():
    b = toy_bundle("ag")
    q = toy_records(17, 7, "Q")
    metrics, pred = evaluate_models(b, q, ["ncf", "popularity", "nn", "ag"])
    assert list(metrics) == ["ncf", "popularity", "nn", "ag"] and pred.num_rows == 4 * 17
    by = {m: [np.array(x) for x in pred.filter(pa.compute.equal(pred["model"], m))["drug_ids"].to_pylist()]
          for m in metrics}
    top = np.argsort(-b.popularity(), kind="stable")[:4]
    assert all(np.array_equal(p, top) for p in by["popularity"])
    with torch.no_grad():
        scores = b.ncf.rank_drugs(encode_records(b.ncf.encode, q, V))
    assert all(len(p) == 4 and set(p.tolist()) == set(torch.topk(s, 4).indices.tolist())
               for p, s in zip(by["ncf"], scores))
    cands = b.index.query(encode_records(b.ncf.encode, q, V), k=5)
    assert all(np.array_equal(p, c[0]) for p, c in zip(by["nn"], cands.packages))  # the nearest patient
    assert metrics["ncf"]["ceiling_f1"] is None and metrics["nn"]["ceiling_f1"] == metrics["ag"]["ceiling_f1"]
    assert "ag" in format_table(metrics) and "popularity" in format_table(metrics)


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="'wg' is not in this model directory"):
        evaluate(toy_bundle("ag"), toy_records(3, 1, "Q"), "wg")


def test_evaluate_after_save_and_load(tmp_path):
    b = toy_bundle("wg")
    save_model_dir(str(tmp_path / "m"), cfg=b.cfg, model_name="wg", ncf=b.ncf, model=b.model, index=b.index,
                   drugs=b.drugs, doc_words=b.doc_words, relation=b.relation, cooc=b.cooc, manifest={},
                   metrics={}, top_k=4)
    q = toy_records(9, 8, "Q")
    before, p1 = evaluate(b, q, "wg")
    loaded = load_model_dir(str(tmp_path / "m"))
    assert loaded.threshold == b.threshold and loaded.top_k == 4
    after, p2 = evaluate(loaded, q, "wg")
    assert before["f1"] == pytest.approx(after["f1"]) and p1.equals(p2)
