"""Toy model directories for the evaluation and experiment tests (no training, no Ray)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import torch

from dpr_dist.config import Config, DataConfig, EvalConfig, ModelConfig
from dpr_dist.data.documents import NOTE_VOCAB_SIZE
from dpr_dist.data.graphs import PairTable
from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.eval.evaluate import encode_records
from dpr_dist.models.ncf import NCF
from dpr_dist.models.variants import build_model
from dpr_dist.train.collate import package_csr
from dpr_dist.train.modeldir import ModelBundle, load_model_dir, save_model_dir

M = 20
#: Disease-document vocabulary: tokens the patient-group patterns can match.
TOKENS = ("age:infant", "age:elderly", "gender:f", "gender:m", "lab:hcg:high", "lab:alt:high", "lab:ast:high",
          "surgery:yes")
V = len(TOKENS)
MODEL = ModelConfig(mlp_out=6, char_dim=6, lstm_hidden=6, drug_dim=12, hidden=16, edge_dim=6)


def toy_records(n: int, seed: int, prefix: str) -> pa.Table:
    """``n`` prepared records over ``M`` drugs and the ``V`` tokens."""
    rng = np.random.default_rng(seed)
    return pa.table({
        "record_id": [f"{prefix}{i:03d}" for i in range(n)],
        "doc_ids": pa.array([np.sort(rng.choice(V, int(rng.integers(1, 4)), replace=False)).tolist()
                             for _ in range(n)], pa.list_(pa.int32())),
        "note": pa.array([rng.integers(1, NOTE_VOCAB_SIZE, int(rng.integers(0, 12))).tolist() for _ in range(n)],
                         pa.list_(pa.int8())),
        "drug_ids": pa.array([np.sort(rng.choice(M, int(rng.integers(2, 7)), replace=False)).tolist()
                              for _ in range(n)], pa.list_(pa.int32())),
    })


def toy_tables(seed: int) -> tuple[PairTable, PairTable, pa.Table]:
    """``R`` (about a third of the pairs labelled), co-occurrences and descriptions of ``R``'s pairs."""
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(0, M * M, 200))
    keys = keys[keys // M != keys % M]
    rel_keys = keys[::3]
    relation = PairTable(M, rel_keys, rng.integers(0, 3, len(rel_keys)).astype(np.int8))
    cooc = PairTable(M, keys, (rng.random(len(keys)) * 0.3).astype(np.float32))
    desc = pa.table({"src": (rel_keys // M).astype(np.int32), "dst": (rel_keys % M).astype(np.int32),
                     "description": [f"drug{k // M} | may affect drug{k % M}." for k in rel_keys]})
    return relation, cooc, desc


def toy_bundle(name: str, seed: int = 0, path: str | None = None) -> ModelBundle:
    """A model directory of ``name`` (untrained weights, NCF encoder, fitted when it has a fit).

    With ``path`` it is written there (with interaction descriptions) and loaded back.
    """
    torch.manual_seed(seed)
    ncf = NCF(MODEL, M, V, NOTE_VOCAB_SIZE).eval()
    train = toy_records(60, seed, "T")
    csr = package_csr(train)
    model = build_model(replace(MODEL, name=name), M, V, NOTE_VOCAB_SIZE)
    model.load_pretrained(ncf)
    if hasattr(model, "fit_packages"):
        model.fit_packages(np.split(csr.indices, csr.indptr[1:-1]), M, seed)
    with torch.no_grad():
        index = CandidateIndex(encode_records(ncf.encode, train, V), csr, train["record_id"].to_pylist())
    relation, cooc, desc = toy_tables(seed)
    cfg = Config(data=DataConfig(threshold=0.05), model=replace(MODEL, name=name),
                 eval=EvalConfig(neighbors=5, batch_size=7))
    drugs = pa.table({"id": np.arange(M, dtype=np.int32), "name": [f"drug{i}" for i in range(M)],
                      "train_count": np.bincount(csr.indices, minlength=M), "aligned": np.ones(M, bool)})
    doc_words = pa.table({"id": np.arange(V, dtype=np.int32), "token": list(TOKENS),
                          "train_count": np.ones(V, np.int64)})
    if path is not None:
        save_model_dir(path, cfg=cfg, model_name=name, ncf=ncf, model=model.eval(), index=index, drugs=drugs,
                       doc_words=doc_words, relation=relation, cooc=cooc, manifest={}, metrics={}, top_k=4,
                       descriptions=desc)
        return load_model_dir(path)
    return ModelBundle(path="mem", cfg=cfg, model_name=name, ncf=ncf, model=model.eval(), drugs=drugs,
                       doc_words=doc_words, relation=relation, cooc=cooc, index=index, manifest={}, metrics={},
                       info={"num_drugs": M, "num_doc_words": V, "threshold": 0.05, "top_k": 4, "model": name})
