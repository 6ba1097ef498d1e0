"""Evaluation of a model directory on prepared records (paper 5.1.1).

For ``Q`` query records:

1. patient embeddings of all queries at once (:func:`encode_records`, chunked): the
   pre-trained NCF encoder for the candidate search, the package model's own encoder for
   scoring;
2. candidate sets: the packages of the ``eval.neighbors`` most cosine-similar training
   patients (:class:`~dpr_dist.eval.candidates.CandidateIndex`);
3. the package model scores every candidate graph of a chunk of queries in one batched
   call, each graph under its query's condition (``owner`` = query row), and picks the
   best (:func:`pick_packages`); candidate graphs are built on the fly from the relation
   and co-occurrence tables (:func:`candidate_graphs`), so no training data is needed;
4. metrics through :func:`~dpr_dist.eval.metrics.summarize`.

Baselines from the same directory: ``ncf`` (the top-``K`` drugs of the pre-trained NCF,
``K`` the average training package size), ``popularity`` (the ``K`` most frequent training
drugs) and ``nn`` (the nearest training patient's package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor
from torch_geometric.data import Batch

from dpr_dist.data.graphs import PairTable, package_edges
from dpr_dist.eval.candidate_sets import Candidates
from dpr_dist.eval.interaction_types import has_type_head, type_head_metrics
from dpr_dist.eval.mbr import mbr_pick
from dpr_dist.eval.metrics import oracle_ceiling, summarize, topk_drugs
from dpr_dist.eval.package_csr import PackageCSR
from dpr_dist.models.batch import PatientBatch
from dpr_dist.models.variants import reads_edges
from dpr_dist.train.collate import collate_patients, package_csr
from dpr_dist.train.packages import PackageSet

if TYPE_CHECKING:
    from dpr_dist.models.dpr import DPR
    from dpr_dist.train.modeldir import ModelBundle

#: Baselines every model directory can evaluate besides its package model.
BASELINES = ("ncf", "popularity", "nn")


@torch.no_grad()
def encode_records(encode: Callable[[PatientBatch], Tensor], table: pa.Table, num_doc_words: int,
                   batch_size: int = 1024, device: torch.device | str | None = None) -> Tensor:
    """Patient embeddings of all records, in chunks of ``batch_size``.

    Args:
        encode: ``PatientBatch -> [b, D]`` (``ncf.encode`` or ``dpr.encode``).
        table: ``Q`` prepared records (``doc_ids``, ``note``).
        num_doc_words: ``V_doc``.
        batch_size: Records per call.
        device: Where ``encode`` runs (CPU when None).

    Returns:
        ``[Q, D]`` float32 on the CPU.
    """
    out = []
    for start in range(0, table.num_rows, max(1, batch_size)):
        p = collate_patients(table.slice(start, batch_size), num_doc_words)
        out.append(encode(p.to(device) if device is not None else p).float().cpu())
    if not out:
        raise ValueError("encode_records: no records")
    return torch.cat(out)


def candidate_graphs(csr: PackageCSR, relation: PairTable, cooc: PairTable, threshold: float,
                     edges: bool = True) -> Batch:
    """Package graphs of arbitrary packages (paper 4.2.1), for scoring.

    Args:
        csr: ``C`` packages (``indptr [C + 1]``, ``indices [nnz]``).
        relation: ``R`` over the vocabulary.
        cooc: Co-occurrence proportions of the training split.
        threshold: ``data.threshold``.
        edges: False: the nodes only, for a model that reads no edges (a package baseline).

    Returns:
        A PyG ``Batch`` of ``C`` graphs (``drug``, ``edge_index``, ``edge_rel``, ``edge_p``,
        ``edge_w``).
    """
    indptr = np.asarray(csr.indptr, np.int64)
    ids = np.asarray(csr.indices, np.int64)
    if not edges:
        return PackageSet.nodes_only(indptr, ids).to_batch()
    e = package_edges(indptr, ids, relation, cooc, threshold)
    ps = PackageSet(indptr, ids, e.offsets, e.src.astype(np.int64), e.dst.astype(np.int64),
                    e.rel.astype(np.int64), e.p, e.w)
    return ps.to_batch()


def subset_candidates(c: Candidates, rows: np.ndarray | slice) -> Candidates:
    """The candidate sets of query rows ``rows`` (the index's packages are shared, not copied)."""
    return Candidates(c.neighbors[rows], c.similarity[rows], c.pkg_indptr, c.pkg_indices)


@torch.no_grad()
def score_candidates(model: "DPR", u: Tensor, cands: Candidates, relation: PairTable, cooc: PairTable,
                     threshold: float, queries_per_call: int = 256,
                     device: torch.device | str | None = None) -> np.ndarray:
    """Scores of every candidate of every query, ``queries_per_call`` queries per call.

    Args:
        model: The package model, a DPR variant or a package baseline (eval mode is set by
            the caller).
        u: ``[Q, D_u]`` the model's own patient embeddings of the queries.
        cands: Candidate sets of the ``Q`` queries.
        relation, cooc, threshold: What candidate graphs are built from.
        queries_per_call: Queries whose candidate graphs go into one batched call.
        device: Where the model runs.

    Returns:
        ``[C]`` float64 scores in the order of :meth:`Candidates.flat`.
    """
    if u.size(0) != len(cands):
        raise ValueError(f"score_candidates: {u.size(0)} embeddings for {len(cands)} candidate sets")
    out = []
    step = max(1, queries_per_call)
    fast = getattr(model, "fast", False)  # DPR's fast path; the baselines have none
    for start in range(0, len(cands), step):
        sub = subset_candidates(cands, slice(start, start + step))
        owner, csr = sub.flat()
        if owner.size == 0:
            continue
        graphs = candidate_graphs(csr, relation, cooc, threshold, edges=reads_edges(model))
        uu = u[start: start + step]
        own = torch.from_numpy(owner)
        plan = model.plan(graphs, own, uu.size(0)) if fast else None  # index maps built on the CPU
        if device is not None:
            graphs, uu, own = graphs.to(device), uu.to(device), own.to(device)
            plan = plan.to(device) if plan is not None else None
        scores = model.score(uu, graphs, own, plan=plan) if plan is not None else model.score(uu, graphs, own)
        out.append(scores.double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def pick_packages(model: "DPR", u: Tensor, cands: Candidates, relation: PairTable, cooc: PairTable,
                  threshold: float, queries_per_call: int = 256,
                  device: torch.device | str | None = None) -> list[np.ndarray]:
    """The best-scoring candidate package of every query (empty if it has none).

    Ties go to the more similar neighbour (:meth:`Candidates.pick`); NN, which scores every
    candidate the same, relies on it.
    """
    scores = score_candidates(model, u, cands, relation, cooc, threshold, queries_per_call, device)
    return cands.pick(scores)[1]


def popularity_packages(counts: np.ndarray, k: int, n: int) -> list[np.ndarray]:
    """The ``k`` most frequent training drugs (ties to the lower id), the same for all ``n`` queries."""
    top = np.argsort(-np.asarray(counts), kind="stable")[:k].astype(np.int64)
    return [top] * n


def predictions_table(record_ids: Sequence[str], model: str, packages: list[np.ndarray],
                      names: np.ndarray) -> pa.Table:
    """``record_id``, ``model``, ``drugs`` (names) and ``drug_ids`` of each prediction."""
    lengths = np.fromiter((len(p) for p in packages), dtype=np.int64, count=len(packages))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.concatenate(packages).astype(np.int64) if packages and lengths.sum() else np.zeros(0, np.int64)
    return pa.table({
        "record_id": pa.array([str(r) for r in record_ids], pa.string()),
        "model": pa.array([model] * len(packages), pa.string()),
        "drugs": pa.ListArray.from_arrays(pa.array(offsets), pa.array(names[flat], pa.string())),
        "drug_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(np.int32))),
    })


def evaluate(bundle: "ModelBundle", records: pa.Table, model: str | None = None, *,
             neighbors: int | None = None, batch_size: int | None = None,
             device: torch.device | str | None = None) -> tuple[dict, pa.Table]:
    """Metrics and predictions of one model of a model directory on prepared records.

    Args:
        bundle: A loaded model directory (:func:`dpr_dist.train.modeldir.load_model_dir`).
        records: ``Q`` prepared records (``record_id``, ``doc_ids``, ``note``, ``drug_ids``)
            over the bundle's vocabularies.
        model: The bundle's package model (its name, default: a DPR variant or a
            package baseline of :mod:`dpr_dist.models.baselines`, scored like DPR) or a
            baseline of :data:`BASELINES` computed from the bundle.
        neighbors: Candidate-set size (default ``eval.neighbors`` of the bundle's config).
        batch_size: Queries per batched scoring call (default ``eval.batch_size``).
        device: Where the models run (CPU by default).

    Returns:
        ``(metrics, predictions)``: :func:`summarize`'s dict (with the oracle ceiling of
        the candidate sets for candidate-picking models) plus ``model``; and a table with
        ``record_id``, ``model``, ``drugs``, ``drug_ids``.

    Raises:
        ValueError: for a model the bundle does not hold, or bad records (naming the
            record and field).
    """
    name = model or bundle.model_name
    metrics, predictions = evaluate_models(bundle, records, [name], neighbors=neighbors, batch_size=batch_size,
                                           device=device)
    return metrics[name], predictions


def evaluate_models(bundle: "ModelBundle", records: pa.Table, models: Sequence[str], *,
                    neighbors: int | None = None, batch_size: int | None = None,
                    device: torch.device | str | None = None,
                    mbr_temperature: float | None = None) -> tuple[dict[str, dict], pa.Table]:
    """:func:`evaluate` for several models at once, sharing embeddings and candidate sets.

    A model with an interaction-type head (DPR-AG) also gets the ``type_*`` entries of
    :func:`~dpr_dist.eval.interaction_types.type_head_metrics`.

    With ``mbr_temperature``, the package model also picks the candidate of highest
    expected F1 under ``softmax(scores / mbr_temperature)`` (:mod:`dpr_dist.eval.mbr`), as
    the extra row ``<model>+mbr`` after the others.

    Returns:
        ``({model: metrics}, predictions of all models concatenated)``.
    """
    for m in models:
        if m not in BASELINES and m != bundle.model_name:
            held = [bundle.model_name] if bundle.model is not None else []
            raise ValueError(f"evaluate: model {m!r} is not in this model directory (it holds "
                             f"{held + list(BASELINES)})")
    if records.num_rows == 0:
        raise ValueError("evaluate: no records")
    cfg = bundle.cfg
    k = neighbors or cfg.eval.neighbors
    per_call = max(1, batch_size or cfg.eval.batch_size)
    true = package_csr(records)
    ids = records["record_id"].to_pylist()
    relation = bundle.relation_matrix()
    names = np.asarray(bundle.drugs["name"].to_pylist(), dtype=object)
    q = records.num_rows
    metrics: dict[str, dict] = {}
    tables = []
    extra: dict[str, list[np.ndarray]] = {}  # the MBR row
    need_cands = any(m not in ("ncf", "popularity") for m in models)
    bundle.ncf.eval()
    u_ncf = encode_records(bundle.ncf.encode, records, bundle.num_doc_words, per_call, device) \
        if ("ncf" in models or need_cands) else None
    cands = bundle.index.query(u_ncf, k=k) if need_cands else None
    ceiling = oracle_ceiling(cands, true) if need_cands else None
    for m in models:
        if m == bundle.model_name and bundle.model is not None:  # the package model (also the trained "nn")
            dpr = bundle.model if device is None else bundle.model.to(device)
            dpr.eval()
            u = encode_records(dpr.encode, records, bundle.num_doc_words, per_call, device)
            scores = score_candidates(dpr, u, cands, bundle.relation, bundle.cooc, bundle.threshold, per_call,
                                      device)
            pred, ceil = cands.pick(scores)[1], ceiling
            if mbr_temperature is not None:
                extra[f"{m}+mbr"] = mbr_pick(cands, scores, mbr_temperature)[1]
        elif m == "ncf":
            with torch.no_grad():
                ncf = bundle.ncf if device is None else bundle.ncf.to(device)
                scores = torch.cat([ncf.rank_drugs(u_ncf[s: s + per_call].to(ncf.drug_emb.weight.device)).cpu()
                                    for s in range(0, q, per_call)])
            pred = topk_drugs(scores, bundle.top_k)
            ceil = None
        elif m == "popularity":
            pred, ceil = popularity_packages(bundle.popularity(), bundle.top_k, q), None
        else:  # "nn" from the bundle's candidate sets
            pred, ceil = cands.pick(np.zeros(int(cands.valid.sum())))[1], ceiling
        metrics[m] = {"model": m, **summarize(pred, true, relation, ceil)}
        if m == bundle.model_name and has_type_head(bundle.model):  # DPR-AG: its type head against R
            metrics[m].update(type_head_metrics(bundle.model, bundle.relation))
        tables.append(predictions_table(ids, m, pred, names))
    for m, pred in extra.items():
        metrics[m] = {"model": m, **summarize(pred, true, relation, ceiling), "mbr_temperature": mbr_temperature}
        tables.append(predictions_table(ids, m, pred, names))
    return metrics, pa.concat_tables(tables)


def format_table(metrics: dict[str, dict], keys: Sequence[str] = ("precision", "recall", "f1", "jaccard",
                                                                  "antagonism_rate", "f1_of_ceiling")) -> str:
    """A small plain-text table, one row per model."""
    header = f"{'model':<12}" + "".join(f"{k:>17}" for k in keys)
    lines = [header, "-" * len(header)]
    for name, m in metrics.items():
        cells = "".join(f"{m.get(k):>17.4f}" if isinstance(m.get(k), float) else f"{'-':>17}" for k in keys)
        lines.append(f"{name:<12}" + cells)
    return "\n".join(lines)
