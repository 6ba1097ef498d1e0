"""Tables 7 and 8 (paper 5.4) as a case study of one patient."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpr_dist.data import io
from dpr_dist.data.graphs import ANTAGONISM, SYNERGISM, package_edges
from dpr_dist.eval.evaluate import candidate_graphs, encode_records
from dpr_dist.eval.experiment_report import markdown_table
from dpr_dist.eval.interaction_types import describe_type_head, type_head_metrics
from dpr_dist.eval.package_csr import PackageCSR
from dpr_dist.train.collate import package_csr
from dpr_dist.train.prepared import read_records

if TYPE_CHECKING:
    from dpr_dist.train.modeldir import ModelBundle

#: Relation labels by code.
TYPES = {SYNERGISM: "Synergism", ANTAGONISM: "Antagonism"}


def labelled_pairs(csr: PackageCSR, bundle: ModelBundle) -> np.ndarray:
    """Number of synergism / antagonism edges in each package's graph ``[N]``."""
    e = package_edges(np.asarray(csr.indptr, np.int64), np.asarray(csr.indices, np.int64), bundle.relation,
                      bundle.cooc, bundle.threshold)
    owner = np.repeat(np.arange(len(csr.indptr) - 1), np.diff(e.offsets))
    return np.bincount(owner, weights=np.isin(e.rel, (SYNERGISM, ANTAGONISM)), minlength=len(csr.indptr) - 1)


def find_record(prepared: str, record_id: str | None, bundle: ModelBundle) -> pa.Table:
    """One prepared record: ``record_id`` from any split (test first), or by default the
    test record whose true package graph has the most labelled drug pairs.

    Raises:
        ValueError: when ``record_id`` is not in the prepared data.
    """
    if record_id is None:
        test = read_records(prepared, "test")
        return test.slice(int(np.argmax(labelled_pairs(package_csr(test), bundle))), 1)
    for split in ("test", "val", "train"):
        tab = read_records(prepared, split)
        hit = tab.filter(pc.equal(tab["record_id"], str(record_id)))
        if hit.num_rows:
            return hit.slice(0, 1)
    raise ValueError(f"case study: record {record_id!r} is not in the prepared data {prepared}")


def _descriptions(bundle: ModelBundle) -> Callable[[np.ndarray, np.ndarray], list]:
    """``(src, dst) -> descriptions`` from the model directory's ``relation.parquet`` (None where absent)."""
    rel = io.read_table(io.join(bundle.path, "relation.parquet"))
    if "description" not in rel.column_names:
        return lambda src, dst: [None] * len(src)
    m = bundle.num_drugs
    keys = rel["src"].to_numpy().astype(np.int64) * m + rel["dst"].to_numpy().astype(np.int64)
    texts = np.asarray(rel["description"].to_pylist(), dtype=object)
    order = np.argsort(keys)
    keys, texts = keys[order], texts[order]

    def lookup(src: np.ndarray, dst: np.ndarray) -> list:
        want = np.asarray(src, np.int64) * m + np.asarray(dst, np.int64)
        pos = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
        return [texts[p] if len(keys) and keys[p] == w else None for p, w in zip(pos, want)]

    return lookup


def _explain(bundle: ModelBundle, record: pa.Table) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """``DPR.explain`` of the record's true package for the record; also the edges' drug ids."""
    graph = candidate_graphs(package_csr(record), bundle.relation, bundle.cooc, bundle.threshold)
    u = encode_records(bundle.model.encode, record, bundle.num_doc_words)
    out = {k: v.detach().cpu().numpy() for k, v in bundle.model.explain(u, graph).items()}
    drug = graph.drug.numpy()
    return out, drug[out["edge_index"][0]], drug[out["edge_index"][1]]


def _md(text: Any) -> str:
    return "-" if text is None else str(text).replace("|", "\\|").replace("\n", " ")


def _type_head_line(ag: ModelBundle) -> str:
    """How far the type probabilities of Table 8 can be trusted: the type head against ``R``."""
    return (f"How far to trust these probabilities: {describe_type_head(type_head_metrics(ag.model, ag.relation))} "
            f"(`model.type_targets: {ag.cfg.model.type_targets}`).")


def case_study_markdown(record: pa.Table, wg: ModelBundle, ag: ModelBundle, max_rows: int, seed: int) -> str:
    """Tables 7 and 8 for one record, as Markdown.

    Table 7 (DPR-WG): every synergism / antagonism pair of the record's true package graph
    with its description and contextual impact factor ``c`` (eq. 10). Table 8 (DPR-AG):
    the same pairs with the non-personalized ``softmax(e Q)`` and personalized
    ``softmax(ê Q)`` interaction-type probabilities (none, synergism, antagonism). Only the
    record id is shown of the patient.
    """
    rid = str(record["record_id"][0].as_py())
    names = np.asarray(wg.drugs["name"].to_pylist(), dtype=object)
    describe = _descriptions(wg)
    n = len(package_csr(record).indices)
    parts = [f"## Case study: record `{rid}`",
             f"Seed {seed}. The record's true package ({n} drugs) is given to each model as in the paper (5.4); "
             f"every drug pair of its package graph labelled synergism or antagonism is listed, at most {max_rows} "
             "per table. Drug 1 acts on drug 2 (an edge drug 1 -> drug 2)."]
    ex, src, dst = _explain(wg, record)
    sel = np.flatnonzero(np.isin(ex["edge_rel"], (SYNERGISM, ANTAGONISM)))
    sel = sel[np.lexsort((-ex["c"][sel], ex["edge_rel"][sel]))][:max_rows]
    texts = describe(src[sel], dst[sel])
    rows = [[names[src[i]], names[dst[i]], _md(t), TYPES[int(ex["edge_rel"][i])], f"{ex['c'][i]:.3f}"]
            for i, t in zip(sel, texts)]
    parts += [f"### Table 7: contextual impact factors (DPR-WG) for record `{rid}`",
              markdown_table(["Drug 1", "Drug 2", "Description", "Type", "Factor"], rows) if rows
              else "No labelled drug pair in this package graph."]
    ex, src, dst = _explain(ag, record)
    sel = np.flatnonzero(np.isin(ex["edge_rel"], (SYNERGISM, ANTAGONISM)))
    change = np.abs(ex["type_prob_personal"] - ex["type_prob"]).sum(axis=1)
    sel = sel[np.lexsort((-change[sel], ex["edge_rel"][sel]))][:max_rows]
    fmt = lambda p: "[" + ", ".join(f"{x:.3f}" for x in p) + "]"  # noqa: E731
    rows = [[names[src[i]], names[dst[i]], TYPES[int(ex["edge_rel"][i])], fmt(ex["type_prob"][i]),
             fmt(ex["type_prob_personal"][i])] for i in sel]
    parts += [f"### Table 8: edge attributes (DPR-AG) for record `{rid}`", _type_head_line(ag),
              markdown_table(["Drug 1", "Drug 2", "Type", "softmax(e Q) (none, syn., ant.)", "softmax(ê Q)"], rows)
              if rows else "No labelled drug pair in this package graph."]
    return "\n\n".join(parts) + "\n"
