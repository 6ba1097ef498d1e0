"""The per-batch transforms of the preparation pipeline (the functions ``map_batches`` runs).

Each takes one Arrow batch and returns one: the raw drug names of a batch
(:func:`unique_drug_names`), validation and normalization (:func:`clean_batch`), the map side
of the vocabulary and co-occurrence counts (:func:`count_batch`, :func:`pairs_batch`) and the
model-ready rows with their package graphs (:func:`build_batch`). They are pure functions of
their arguments, so :mod:`dpr_dist.data.prepare` runs them on Ray Data and
``benchmarks/prepare.py``'s single-process reference runs them in a plain loop.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpr_dist.data.documents import disease_documents, encode_notes
from dpr_dist.data.graphs import PairTable, package_edges, pair_counts
from dpr_dist.data.normalize import DrugNormalizer
from dpr_dist.data.schema import EMR_REQUIRED, EMR_SCHEMA, conform, validate_emr


def unique_drug_names(batch: pa.Table) -> pa.Table:
    """Map side of the raw drug-name collection (``drugs`` as a list or a ``|`` string)."""
    col = batch["drugs"].combine_chunks()
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = pc.split_pattern(col.cast(pa.string()), "|")
    return pa.table({"name": pc.unique(pc.utf8_trim_whitespace(pc.list_flatten(col)))})


def clean_batch(batch: pa.Table, normalizer: DrugNormalizer, min_drugs: int, note_max_len: int) -> pa.Table:
    """Validate and normalize one batch of raw EMR rows.

    Returns the batch with normalized ``drugs``, the disease document ``doc``, the encoded
    ``note`` and, for rejected rows, ``reject_field`` / ``reject_reason`` (null when good).
    """
    source = batch["path"].to_pylist() if "path" in batch.column_names else None
    table = conform(batch.drop_columns([c for c in ("path",) if c in batch.column_names]),
                    EMR_SCHEMA, EMR_REQUIRED, "EMR")
    drugs = normalizer.normalize_lists(table["drugs"].combine_chunks())
    n_drugs = pc.fill_null(pc.list_value_length(drugs), 0).to_numpy(zero_copy_only=False)
    good, rejects = validate_emr(table, n_drugs, min_drugs)
    reason = np.full(table.num_rows, None, dtype=object)
    field = np.full(table.num_rows, None, dtype=object)
    rows = rejects["row"].to_numpy()
    reason[rows] = rejects["reason"].to_pylist()
    field[rows] = rejects["field"].to_pylist()
    safe = table.set_column(table.schema.get_field_index("labs"), "labs",
                            pc.if_else(pa.array(good), table["labs"], pa.nulls(table.num_rows, table["labs"].type)))
    return pa.table({
        "record_id": table["record_id"],
        "patient_id": table["patient_id"],
        "source": pa.array(source if source else [""] * table.num_rows, pa.string()),
        "drugs": drugs,
        "doc": disease_documents(safe),
        "note": encode_notes(table["note"].combine_chunks(), note_max_len),
        "admit_time": table["admit_time"],
        "reject_field": pa.array(field.tolist(), pa.string()),
        "reject_reason": pa.array(reason.tolist(), pa.string()),
    })


def count_batch(batch: pa.Table) -> pa.Table:
    """Map side of the vocabulary aggregation: token counts per (kind, split)."""
    parts = []
    for kind, col in (("drug", "drugs"), ("doc", "doc")):
        flat = pc.list_flatten(batch[col])
        split = pc.list_parent_indices(batch[col])
        sp = pc.take(batch["split"], split)
        t = pa.table({"token": flat, "split": sp}).group_by(["token", "split"]).aggregate([([], "count_all")])
        parts.append(t.append_column("kind", pa.array([kind] * t.num_rows, pa.string())))
    return pa.concat_tables(parts).rename_columns(["token", "split", "count", "kind"])


def _ids(lists: pa.ChunkedArray | pa.ListArray, vocab: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    ids = pc.index_in(lists.flatten(), value_set=vocab).to_numpy(zero_copy_only=False)
    offsets = lists.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    return offsets, ids


def pairs_batch(batch: pa.Table, drug_vocab: pa.Array) -> pa.Table:
    """Map side of the co-occurrence aggregation over training packages."""
    offsets, ids = _ids(batch["drugs"], drug_vocab)
    item, keys, counts = pair_counts(offsets, ids.astype(np.int64), len(drug_vocab))
    nz = np.flatnonzero(item)
    return pa.table({"key": np.concatenate([keys, -1 - nz]), "count": np.concatenate([counts, item[nz]])})


def build_batch(batch: pa.Table, drug_vocab: pa.Array, doc_vocab: pa.Array, relation: PairTable,
                cooc: PairTable, threshold: float) -> pa.Table:
    """Turn cleaned records into model-ready rows with their package graphs."""
    offsets, ids = _ids(batch["drugs"], drug_vocab)
    edges = package_edges(offsets, ids.astype(np.int64), relation, cooc, threshold)
    doc = batch["doc"].combine_chunks()
    doc_ids = pc.index_in(doc.flatten(), value_set=doc_vocab)
    doc_owner = pc.list_parent_indices(doc).to_numpy()
    keep = pc.is_valid(doc_ids).to_numpy(zero_copy_only=False)
    doc_off = np.concatenate([[0], np.cumsum(np.bincount(doc_owner[keep], minlength=batch.num_rows))])

    def lists(off, values, typ):
        return pa.ListArray.from_arrays(pa.array(off, pa.int32()), pa.array(values, typ))

    return pa.table({
        "record_id": batch["record_id"],
        "patient_id": batch["patient_id"],
        "split": batch["split"],
        "drugs": batch["drugs"],
        "drug_ids": lists(offsets, ids.astype(np.int32), pa.int32()),
        "doc_ids": lists(doc_off, doc_ids.filter(pa.array(keep)).cast(pa.int32()), pa.int32()),
        "note": batch["note"],
        "edge_src": lists(edges.offsets, edges.src, pa.int16()),
        "edge_dst": lists(edges.offsets, edges.dst, pa.int16()),
        "edge_rel": lists(edges.offsets, edges.rel, pa.int8()),
        "edge_p": lists(edges.offsets, edges.p, pa.float32()),
        "edge_w": lists(edges.offsets, edges.w, pa.float32()),
        "admit_time": batch["admit_time"],
    })
