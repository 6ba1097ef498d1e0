"""Evaluating package generation (paper section 6) without doctors: picking from ``S1``
against ``S = S1 ∪ S2 ∪ S3``."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pyarrow as pa
import torch

from dpr_dist.config import GenerationConfig
from dpr_dist.eval.candidate_sets import Candidates
from dpr_dist.eval.evaluate import encode_records, score_candidates
from dpr_dist.eval.generation import flatten, generate_batch, ranks_from_scores
from dpr_dist.eval.mbr import expected_f1
from dpr_dist.eval.metrics import oracle_ceiling, summarize
from dpr_dist.train.collate import package_csr

if TYPE_CHECKING:
    from dpr_dist.train.modeldir import ModelBundle


def as_candidates(generated: Sequence[Sequence]) -> tuple[Candidates, np.ndarray]:
    """The packages of ``S`` per patient as :class:`Candidates` (slot order kept) and ``|S1|`` per patient."""
    owner, csr = flatten(generated)
    sizes = np.array([len(s) for s in generated], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    slot = np.arange(len(owner)) - starts[owner]
    neighbors = np.full((len(generated), max(int(sizes.max(initial=0)), 1)), -1, dtype=np.int64)
    neighbors[owner, slot] = np.arange(len(owner))
    similarity = np.where(neighbors >= 0, 0.0, -np.inf).astype(np.float32)
    n_s1 = np.array([sum(g.origin == "s1" for g in s) for s in generated], dtype=np.int64)
    return Candidates(neighbors, similarity, csr.indptr, csr.indices), n_s1


def generation_metrics(bundle: ModelBundle, records: pa.Table, gen: GenerationConfig, *,
                       with_picks: bool = False, mbr_temperature: float | None = None) -> dict[str, Any]:
    """Picking from ``S1`` against ``S = S1 ∪ S2 ∪ S3`` (paper section 6) on ``records``.

    ``S1`` is the candidate set of evaluation (so the ``S1`` pick equals the model's test
    pick); ``l`` is the pre-trained NCF's ranking for the patient and ``L`` the training
    popularity. All packages of ``S`` are scored in one batched call per chunk of
    ``eval.batch_size`` patients.

    Returns:
        ``{"s1": metrics, "s": metrics, "picked_generated": share of patients whose pick
        from S is a generated package, "mean_s1": mean |S1|, "mean_s": mean |S|}``; the
        metrics are :func:`summarize`'s, with the oracle ceiling of each candidate set.
        With ``with_picks``, also ``"picks"``: the package picked from ``S`` for each
        record (drug ids, in record order). With ``mbr_temperature``, also ``"s_mbr"``:
        the metrics of the pick of highest expected F1 from ``S`` (:mod:`dpr_dist.eval.mbr`),
        and with ``with_picks`` its packages as ``"picks_mbr"``.
    """
    model, per_call, v = bundle.model, max(1, bundle.cfg.eval.batch_size), bundle.num_doc_words
    popularity_rank = ranks_from_scores(bundle.popularity())
    keys = ("s1", "s") if mbr_temperature is None else ("s1", "s", "s_mbr")
    picks: dict[str, list] = {k: [] for k in keys}
    ceilings: dict[str, list] = {k: [] for k in keys}
    generated, n_s1, n_s = [], [], []
    for start in range(0, records.num_rows, per_call):
        sub = records.slice(start, per_call)
        true = package_csr(sub)
        with torch.no_grad():
            u_ncf = encode_records(bundle.ncf.encode, sub, v, per_call)
            l_rank = ranks_from_scores(bundle.ncf.rank_drugs(u_ncf).double().numpy())
            u = encode_records(model.encode, sub, v, per_call)
        cands = bundle.index.query(u_ncf, k=bundle.cfg.eval.neighbors)
        s = generate_batch(cands.packages, l_rank, popularity_rank, bundle.relation, bundle.cooc, gen)
        every, s1_size = as_candidates(s)
        scores = score_candidates(model, u, every, bundle.relation, bundle.cooc, bundle.threshold, per_call)
        in_s1 = np.nonzero(every.valid)[1] < s1_size[np.nonzero(every.valid)[0]]  # flat order: row-major
        only_s1 = replace(every, neighbors=np.where(np.arange(every.neighbors.shape[1]) < s1_size[:, None],
                                                     every.neighbors, -1))
        choices = [("s1", only_s1, scores[in_s1]), ("s", every, scores)]
        if mbr_temperature is not None:
            choices.append(("s_mbr", every, expected_f1(every, scores, mbr_temperature)))
        for key, c, sc in choices:
            slot, picked = c.pick(sc)
            picks[key] += picked
            ceilings[key].append(oracle_ceiling(c, true))
            if key == "s":
                generated.append((slot >= s1_size)[slot >= 0])
        n_s1.append(s1_size)
        n_s.append(every.counts)
    true, rel = package_csr(records), bundle.relation_matrix()
    out: dict[str, Any] = {k: summarize(picks[k], true, rel, np.concatenate(ceilings[k])) for k in picks}
    out.update(picked_generated=float(np.concatenate(generated).mean()) if generated else 0.0,
               mean_s1=float(np.concatenate(n_s1).mean()), mean_s=float(np.concatenate(n_s).mean()))
    if with_picks:
        out["picks"] = picks["s"]
        if mbr_temperature is not None:
            out["picks_mbr"] = picks["s_mbr"]
    return out
