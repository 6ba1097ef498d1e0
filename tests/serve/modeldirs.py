"""Small model directories for the serving and batch-scoring tests, built without Ray Train.

NCF and the package model are freshly initialised (seeded); the candidate index, the
vocabularies and the pair tables come from a prepared data directory, exactly as
``dpr_dist.train.run.train`` assembles them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dpr_dist.config import load_config
from dpr_dist.data import io
from dpr_dist.data.documents import NOTE_VOCAB_SIZE
from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.eval.evaluate import encode_records
from dpr_dist.eval.metrics import mean_package_size
from dpr_dist.models.ncf import NCF
from dpr_dist.models.variants import build_model
from dpr_dist.serve.explain import write_descriptions
from dpr_dist.train.collate import package_csr
from dpr_dist.train.modeldir import save_model_dir
from dpr_dist.train.prepared import load_prepared, read_records
from dpr_dist.train.setup import fit_packages

REPO = Path(__file__).resolve().parents[2]


def build_model_dir(prepared: str, out: str, variant: str = "ag", seed: int = 0, descriptions: str = "relation",
                    neighbors: int = 5) -> str:
    """Write an untrained model directory of ``variant`` (a DPR variant or a package baseline)
    over the prepared data at ``prepared``.

    ``descriptions``: ``"relation"`` (a ``description`` column of ``relation.parquet``, as
    training writes it), ``"file"`` (``descriptions.parquet``) or ``""`` (none).
    """
    cfg = load_config(REPO / "configs" / "tiny.yaml",
                      [f"data.prepared={prepared}", f"model.name={variant}", f"eval.neighbors={neighbors}"])
    prep = load_prepared(prepared, cfg.data.threshold)
    train = read_records(prepared, "train")
    described = io.read_table(io.join(prepared, "relation.parquet")) if descriptions == "relation" else None
    torch.manual_seed(seed)
    ncf = NCF(cfg.model, prep.num_drugs, prep.num_doc_words, NOTE_VOCAB_SIZE).eval()
    dpr = build_model(cfg.model, prep.num_drugs, prep.num_doc_words, NOTE_VOCAB_SIZE)
    dpr.load_pretrained(ncf)
    if hasattr(dpr, "fit_packages"):  # package2vec, lda: their unsupervised fit, as training does
        fit_packages(dpr, package_csr(train), prep.num_drugs, seed)
    dpr.eval()
    with torch.no_grad():
        index = CandidateIndex(encode_records(ncf.encode, train, prep.num_doc_words), package_csr(train),
                               train["record_id"].to_pylist())
    save_model_dir(out, cfg=cfg, model_name=variant, ncf=ncf, model=dpr, index=index, drugs=prep.drugs,
                   doc_words=prep.doc_words, relation=prep.relation, cooc=prep.cooc, manifest=prep.manifest,
                   metrics={"best_val_f1": 0.0, "test": {"f1": 0.0}, "seed": seed},
                   top_k=mean_package_size(package_csr(train)),
                   descriptions=described)
    if descriptions == "file":  # the older layout: descriptions.parquet next to a relation.parquet without them
        write_descriptions(out, prepared)
    return out
