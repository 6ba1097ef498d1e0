"""Validation during training: the validation split as the workers get it, and its F1.

Every epoch each rank scores its slice of the validation records with the same procedure
as the test evaluation (:mod:`dpr_dist.eval.evaluate`): NCF recommends its top-``K`` drugs,
a package model picks the best-scoring package of the patient's candidate set (the
packages of the most similar training patients under the pre-trained encoder). The ranks'
F1 sums are all-reduced by the caller (:mod:`dpr_dist.train.worker`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from dpr_dist.config import Config
from dpr_dist.data.graphs import PairTable
from dpr_dist.eval.candidate_sets import Candidates
from dpr_dist.eval.evaluate import pick_packages, subset_candidates
from dpr_dist.eval.metrics import package_prf, topk_drugs
from dpr_dist.train.collate import collate_patients, package_csr


@dataclass
class ValidationData:
    """The validation split as the workers need it (built once on the driver).

    Attributes:
        table: Validation records (``record_id``, ``doc_ids``, ``note``, ``drug_ids``).
        candidates: Candidate sets from the pre-trained embeddings (package models).
        top_k: NCF's package size (average training package size).
        relation, cooc: Pair tables that candidate graphs are built from.
    """

    table: pa.Table
    candidates: Candidates | None
    top_k: int
    relation: PairTable
    cooc: PairTable


@torch.no_grad()
def validation_f1_sum(model: nn.Module, val: ValidationData, rows: np.ndarray, kind: str, cfg: Config,
                      num_doc_words: int, device: torch.device) -> float:
    """Sum of the F1 of the validation records ``rows`` (the model in eval mode): top-``K``
    drugs for NCF, the best-scoring candidate for a package model."""
    model.eval()
    if not rows.size:
        return 0.0
    part = val.table.take(rows)
    chunk = max(1, cfg.eval.batch_size)
    preds: list[np.ndarray] = []
    for s in range(0, len(rows), chunk):
        sub = part.slice(s, chunk)
        u = model.encode(collate_patients(sub, num_doc_words).to(device))
        if kind == "ncf":
            preds += topk_drugs(model.rank_drugs(u).cpu(), val.top_k)
        else:
            preds += pick_packages(model, u, subset_candidates(val.candidates, rows[s: s + chunk]), val.relation,
                                   val.cooc, cfg.data.threshold, chunk, device)
    return float(package_prf(preds, package_csr(part))["f1"].sum())
