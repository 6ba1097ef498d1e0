"""The model directory: save / load round trip, local and on S3, and its failure messages."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest
import torch

from dpr_dist.config import Config, DataConfig, ModelConfig
from dpr_dist.data.documents import NOTE_VOCAB_SIZE
from dpr_dist.data.graphs import PairTable
from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.models.dpr import DPR
from dpr_dist.models.ncf import NCF
from dpr_dist.train.modeldir import FORMAT, load_model_dir, save_model_dir, update_metrics

M, V = 12, 7
MODEL = ModelConfig(mlp_out=4, char_dim=4, lstm_hidden=4, drug_dim=8, hidden=16, edge_dim=4)


def parts(variant: str, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    packages = [np.sort(rng.choice(M, int(rng.integers(2, 5)), replace=False)) for _ in range(20)]
    keys = np.unique(rng.integers(0, M * M, 40))
    return dict(
        cfg=Config(data=DataConfig(threshold=0.03), model=MODEL),
        model_name=variant,
        ncf=NCF(MODEL, M, V, NOTE_VOCAB_SIZE),
        model=DPR(MODEL, M, V, NOTE_VOCAB_SIZE, variant) if variant != "ncf" else None,
        index=CandidateIndex(rng.normal(size=(20, 8)), packages, [f"T{i}" for i in range(20)]),
        drugs=pa.table({"id": np.arange(M, dtype=np.int32), "name": [f"d{i}" for i in range(M)],
                        "train_count": rng.integers(0, 9, M), "aligned": np.ones(M, bool)}),
        doc_words=pa.table({"id": np.arange(V, dtype=np.int32), "token": [f"w{i}" for i in range(V)],
                            "train_count": np.ones(V, np.int64)}),
        relation=PairTable(M, keys[::2], rng.integers(0, 3, len(keys[::2])).astype(np.int8)),
        cooc=PairTable(M, keys, rng.random(len(keys)).astype(np.float32)),
        manifest={"format": "dpr-dist/prepared/v1", "table1": {"records": 20}},
        metrics={"best_val_f1": 0.25, "history": [{"epoch": 0, "val_f1": 0.25}]},
        top_k=3,
    )


def assert_same(p: dict, b) -> None:
    for ours, theirs in ((p["ncf"], b.ncf), (p["model"], b.model)):
        if ours is None:
            assert theirs is None
            continue
        for (k1, t1), (k2, t2) in zip(ours.state_dict().items(), theirs.state_dict().items()):
            assert k1 == k2 and torch.equal(t1, t2), k1
    for name in ("relation", "cooc"):
        np.testing.assert_array_equal(getattr(b, name).keys, p[name].keys)
        np.testing.assert_array_equal(getattr(b, name).values, p[name].values)
    assert torch.equal(b.index.embeddings, p["index"].embeddings)
    np.testing.assert_array_equal(b.index.indices, p["index"].indices)
    assert b.index.ids(np.array([3])).tolist() == ["T3"]
    assert b.drugs.equals(p["drugs"]) and b.doc_words.equals(p["doc_words"])
    assert b.manifest == p["manifest"] and b.metrics == p["metrics"]
    assert b.model_name == p["model_name"] and b.cfg.model.name == p["model_name"]
    assert (b.num_drugs, b.num_doc_words, b.top_k, b.threshold) == (M, V, 3, 0.03)
    assert b.info["format"] == FORMAT
    assert b.relation_matrix().shape == (M, M) and b.popularity().tolist() == p["drugs"]["train_count"].to_pylist()


@pytest.mark.parametrize("variant", ["ag", "wg", "ncf"])
def test_round_trip_local(tmp_path, variant):
    p = parts(variant)
    out = str(tmp_path / "model")
    assert save_model_dir(out, **p) == out
    b = load_model_dir(out)
    assert_same(p, b)
    assert not b.ncf.training and (b.model is None or not b.model.training)
    assert os.path.exists(os.path.join(out, "model.pt")) == (variant != "ncf")


def test_saving_replaces_an_old_directory(tmp_path):
    out = str(tmp_path / "model")
    save_model_dir(out, **parts("ag"))
    save_model_dir(out, **parts("ncf", seed=1))
    assert not os.path.exists(os.path.join(out, "model.pt"))
    assert load_model_dir(out).model_name == "ncf"


def test_model_must_match_name(tmp_path):
    p = parts("ag")
    p["model_name"] = "ncf"
    with pytest.raises(ValueError, match="needs no package model"):
        save_model_dir(str(tmp_path / "m"), **p)


def test_missing_file_and_wrong_format_are_named(tmp_path):
    out = tmp_path / "model"
    save_model_dir(str(out), **parts("ag"))
    (out / "candidate_index.npz").unlink()
    with pytest.raises(FileNotFoundError, match="candidate_index.npz"):
        load_model_dir(str(out))
    (out / "bundle.json").write_text('{"format": "something/else"}')
    with pytest.raises(ValueError, match="format 'something/else'"):
        load_model_dir(str(out))
    with pytest.raises(FileNotFoundError, match="bundle.json"):
        load_model_dir(str(tmp_path / "nowhere"))


def test_update_metrics_merges(tmp_path):
    out = str(tmp_path / "model")
    save_model_dir(out, **parts("wg"))
    merged = update_metrics(out, {"test": {"f1": 0.5}})
    assert merged["best_val_f1"] == 0.25 and load_model_dir(out).metrics["test"] == {"f1": 0.5}


def test_round_trip_s3(s3_server):
    p = parts("ag", seed=2)
    uri = "s3://dpr/models/test-ag"
    save_model_dir(uri, **p)
    b = load_model_dir(uri)
    assert_same(p, b)
    assert b.path == uri
    update_metrics(uri, {"test": {"f1": 0.1}})
    assert load_model_dir(uri).metrics["test"]["f1"] == 0.1
