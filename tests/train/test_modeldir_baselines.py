"""Model directories of the package baselines: rebuilt by name with their fitted buffers, and
interaction descriptions kept next to the relation matrix."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dpr_dist.config import Config, DataConfig, ModelConfig
from dpr_dist.data.documents import NOTE_VOCAB_SIZE
from dpr_dist.data.graphs import PairTable
from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.models.ncf import NCF
from dpr_dist.models.variants import build_model
from dpr_dist.train.modeldir import load_model_dir, pair_table_to_arrow, save_model_dir

M, V = 12, 7
MODEL = ModelConfig(mlp_out=4, char_dim=4, lstm_hidden=4, drug_dim=8, hidden=16, edge_dim=4)


def save(tmp_path, name: str, descriptions: pa.Table | None = None, seed: int = 0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    packages = [np.sort(rng.choice(M, int(rng.integers(2, 5)), replace=False)) for _ in range(30)]
    model = build_model(replace(MODEL, name=name), M, V, NOTE_VOCAB_SIZE)
    if hasattr(model, "fit_packages"):
        model.fit_packages(packages, M, seed)
    keys = np.unique(rng.integers(0, M * M, 40))
    relation = PairTable(M, keys[::2], rng.integers(0, 3, len(keys[::2])).astype(np.int8))
    path = str(tmp_path / name)
    save_model_dir(path, cfg=Config(data=DataConfig(threshold=0.03), model=MODEL), model_name=name,
                   ncf=NCF(MODEL, M, V, NOTE_VOCAB_SIZE), model=model,
                   index=CandidateIndex(rng.normal(size=(30, 8)), packages, [f"T{i}" for i in range(30)]),
                   drugs=pa.table({"id": np.arange(M, dtype=np.int32), "name": [f"d{i}" for i in range(M)],
                                   "train_count": rng.integers(0, 9, M), "aligned": np.ones(M, bool)}),
                   doc_words=pa.table({"id": np.arange(V, dtype=np.int32), "token": [f"w{i}" for i in range(V)],
                                       "train_count": np.ones(V, np.int64)}),
                   relation=relation, cooc=PairTable(M, keys, rng.random(len(keys)).astype(np.float32)),
                   manifest={}, metrics={}, top_k=3, descriptions=descriptions)
    return path, model, relation


@pytest.mark.parametrize("name", ["nn", "package2vec", "lda", "br", "dam", "gnn"])
def test_baseline_round_trip_keeps_fitted_buffers(tmp_path, name):
    path, model, _ = save(tmp_path, name)
    bundle = load_model_dir(path)
    assert type(bundle.model) is type(model) and bundle.model_name == name and not bundle.model.training
    theirs = bundle.model.state_dict()
    assert list(theirs) == list(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(theirs[key], value), key
    if hasattr(model, "fitted"):
        assert bool(bundle.model.fitted)


def test_descriptions_are_kept_in_relation_parquet(tmp_path):
    _, _, relation = save(tmp_path, "br")
    src, dst = relation.keys // M, relation.keys % M
    # descriptions in another order, one pair without any and one pair that is not in R
    desc = pa.table({"src": np.r_[dst[:1], src[::-1][:-1]].astype(np.int32),
                     "dst": np.r_[src[:1], dst[::-1][:-1]].astype(np.int32),
                     "description": ["not in R"] + [f"{a} acts on {b}" for a, b in zip(src[::-1][:-1], dst[::-1][:-1])]})
    path, _, _ = save(tmp_path / "with", "br", desc)
    table = pq.read_table(f"{path}/relation.parquet")
    assert table.column_names == ["src", "dst", "label", "description"]
    got = table["description"].to_pylist()
    assert got[0] is None  # the first pair of R had no description
    assert got[1:] == [f"{a} acts on {b}" for a, b in zip(src[1:], dst[1:])]
    assert pair_table_to_arrow(relation, "label").column_names == ["src", "dst", "label"]
    assert load_model_dir(path).relation.keys.tolist() == relation.keys.tolist()
