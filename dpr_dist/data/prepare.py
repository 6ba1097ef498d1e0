"""The preparation pipeline on Ray Data (``dpr prepare``).

EMR records and interactions -> validated, normalized records -> vocabularies, patient
split, relation matrix ``R`` and co-occurrence proportions (a distributed aggregation over
the blocks) -> one package graph per record (``map_batches``) -> sharded Parquet, a
``manifest.json`` with the paper's Table 1 statistics, and ``rejects``.

Layout of the output directory::

    manifest.json            statistics, inputs, split sizes, reject counts
    records/split=train/     one row per record: ids, document, note, graph edges
    records/split=val/
    records/split=test/
    vocab/drugs.parquet      id, name, train_count, aligned
    vocab/doc_words.parquet  id, token, train_count
    relation.parquet         src, dst, label (R with direction), description
    cooccurrence.parquet     src, dst, count, p (training split only)
    rejects.parquet          source, row, record_id, field, reason

The per-batch work lives in pure functions (:mod:`graphs`, :mod:`documents`,
:func:`clean_batch`, :func:`build_batch`) so the same steps run without Ray in
``benchmarks/prepare.py``'s single-process reference.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from dpr_dist.config import Config
from dpr_dist.data import io
from dpr_dist.data.documents import disease_documents, encode_notes
from dpr_dist.data.graphs import (
    PairTable, cooccurrence_table, merge_counts, package_edges, pair_counts, relation_table)
from dpr_dist.data.interactions import fill_missing_labels
from dpr_dist.data.normalize import DrugNormalizer, base_names
from dpr_dist.data.schema import (
    DDI_REQUIRED, DDI_SCHEMA, EMR_REQUIRED, EMR_SCHEMA, REJECTS_SCHEMA, check_columns, conform, validate_emr)

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
LABEL_NAMES = {0: "none", 1: "synergism", 2: "antagonism"}


# ----------------------------------------------------------------------------- per batch
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


# ----------------------------------------------------------------------------- driver side
def make_normalizer(inter: pa.Table, vocab: str = "", emr_names: list[str] = ()) -> DrugNormalizer:
    """Drug-name normalizer onto the interaction table's names.

    Args:
        inter: The interaction table (its names are the preferred canonical names).
        vocab: Optional vocabulary CSV whose synonyms also align names.
        emr_names: Raw EMR drug names; their salt-free forms become canonical too, so a
            salt form folds into the bare name the EMR also uses.
    """
    names = pc.unique(pa.concat_arrays([inter["drug_a"].combine_chunks(), inter["drug_b"].combine_chunks()]))
    names = [n for n in names.to_pylist() if n]
    extra = base_names(emr_names)
    if vocab:
        return DrugNormalizer.from_vocabulary(vocab, prefer=names, extra=extra)
    return DrugNormalizer([*names, *extra], prefer=names)


def unique_drug_names(batch: pa.Table) -> pa.Table:
    """Map side of the raw drug-name collection (``drugs`` as a list or a ``|`` string)."""
    col = batch["drugs"].combine_chunks()
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = pc.split_pattern(col.cast(pa.string()), "|")
    return pa.table({"name": pc.unique(pc.utf8_trim_whitespace(pc.list_flatten(col)))})


def load_interactions(uri: str) -> tuple[pa.Table, pa.Table]:
    """Read, validate and label the interaction table.

    Rows with a missing drug name or an unknown label are quarantined; rows with no label
    are classified from their description by the template rules.

    Returns:
        ``(interactions, rejects)``: interactions with ``drug_a``, ``drug_b``, ``label``,
        ``description`` and the integer ``code`` (0 none, 1 synergism, 2 antagonism).
    """
    table = conform(io.read_table(uri), DDI_SCHEMA, DDI_REQUIRED, f"interaction input {uri}")
    n = table.num_rows
    reason = np.full(n, None, dtype=object)
    field = np.full(n, None, dtype=object)
    for col in ("drug_a", "drug_b"):
        c = table[col].combine_chunks()
        blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(c)), 0), True)
        m = blank.to_numpy(zero_copy_only=False) & (reason == None)  # noqa: E711
        reason[m], field[m] = f"missing {col}", col
    label = pc.utf8_lower(pc.utf8_trim_whitespace(table["label"].combine_chunks()))
    bad_label = pc.fill_null(pc.invert(pc.is_in(label, value_set=pa.array(list(LABEL_NAMES.values())))), False)
    m = bad_label.to_numpy(zero_copy_only=False) & (reason == None)  # noqa: E711
    reason[m], field[m] = "label must be none, synergism or antagonism", "label"
    no_text = pc.and_(pc.is_null(label), pc.is_null(table["description"])).to_numpy(zero_copy_only=False)
    m = no_text & (reason == None)  # noqa: E711
    reason[m], field[m] = "neither label nor description given", "label"
    ok = reason == None  # noqa: E711
    bad = np.flatnonzero(~ok)
    rejects = pa.table({"source": pa.array([uri] * len(bad), pa.string()), "row": pa.array(bad, pa.int64()),
                        "record_id": pc.binary_join_element_wise(
                            table["drug_a"].take(bad), table["drug_b"].take(bad), "->").cast(pa.string()),
                        "field": pa.array(field[bad].tolist(), pa.string()),
                        "reason": pa.array(reason[bad].tolist(), pa.string())}, schema=REJECTS_SCHEMA)
    table = table.set_column(2, "label", label).filter(pa.array(ok))
    table, more = fill_missing_labels(table)
    codes = pc.index_in(table["label"], value_set=pa.array(["none", "synergism", "antagonism"]))
    table = table.append_column("code", codes.cast(pa.int8()))
    return table, pa.concat_tables([rejects, more.cast(REJECTS_SCHEMA)])


def collect(ds) -> pa.Table:
    """Bring a (small) Ray Dataset to the driver as one Arrow table."""
    import ray

    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    if not tables:
        return ds.schema().base_schema.empty_table() if ds.schema() is not None else pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


def assign_splits(patient_ids: np.ndarray, fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Patient-level split: every patient lands in exactly one of train / val / test."""
    patients = np.unique(patient_ids.astype(str))
    perm = np.random.default_rng(seed).permutation(len(patients))
    cuts = np.floor(np.cumsum(fractions)[:2] / sum(fractions) * len(patients)).astype(int)
    split = np.empty(len(patients), dtype=object)
    split[perm[: cuts[0]]] = "train"
    split[perm[cuts[0]: cuts[1]]] = "val"
    split[perm[cuts[1]:]] = "test"
    return dict(zip(patients.tolist(), split.tolist()))


def read_emr_dataset(uri: str):
    """A Ray Dataset over the EMR files (Parquet, CSV and JSON Lines; local or S3)."""
    import ray

    files = io.list_files(uri)
    fs, _ = io.filesystem(uri)
    strip = (lambda f: f[len("s3://"):]) if io.is_s3(uri) else (lambda f: f)
    by_fmt: dict[str, list[str]] = {}
    for f in files:
        by_fmt.setdefault(io.file_format(f), []).append(strip(f))
    parts = []
    for fmt, paths in sorted(by_fmt.items()):
        reader = {"parquet": ray.data.read_parquet, "csv": ray.data.read_csv, "json": ray.data.read_json}[fmt]
        parts.append(reader(paths, filesystem=fs, include_paths=True))
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def prepare(cfg: Config, emr: str | None = None, ddi: str | None = None, out: str | None = None) -> dict[str, Any]:
    """Run the whole preparation and return the manifest (also written to ``out``).

    Raises:
        SchemaError: before any work, when an input misses a required column or has a
            column of the wrong type.
    """
    import ray
    from ray.data.expressions import col

    from dpr_dist.runtime import ensure_ray

    emr, ddi, out = emr or cfg.data.emr, ddi or cfg.data.ddi, out or cfg.data.prepared
    dc = cfg.data
    t0 = time.perf_counter()
    check_columns(io.peek_schema(emr), EMR_SCHEMA, EMR_REQUIRED, f"EMR input {emr}")
    check_columns(io.peek_schema(ddi), DDI_SCHEMA, DDI_REQUIRED, f"interaction input {ddi}")
    inter, ddi_rejects = load_interactions(ddi)
    ensure_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    raw = read_emr_dataset(emr)
    names = collect(raw.select_columns(["drugs"]).map_batches(unique_drug_names, batch_format="pyarrow"))
    normalizer = make_normalizer(inter, dc.drug_vocab, pc.unique(names["name"]).to_pylist() if names.num_rows else [])
    inter = inter.set_column(0, "drug_a", normalizer.normalize_array(inter["drug_a"].combine_chunks()))
    inter = inter.set_column(1, "drug_b", normalizer.normalize_array(inter["drug_b"].combine_chunks()))

    cleaned = raw.map_batches(
        clean_batch, batch_format="pyarrow", batch_size=dc.rows_per_block,
        fn_kwargs={"normalizer": normalizer, "min_drugs": dc.min_drugs, "note_max_len": dc.note_max_len},
    ).materialize()
    log.info("[%.1fs] validated and normalized %d rows", time.perf_counter() - t0, cleaned.count())

    status = collect(cleaned.select_columns(["record_id", "patient_id", "reject_reason"]))
    rid = status["record_id"].combine_chunks()
    ok = pc.is_null(status["reject_reason"]).to_numpy(zero_copy_only=False)
    vc = pc.value_counts(rid.filter(pa.array(ok)))
    dup_ids = vc.field("values").filter(pc.greater(vc.field("counts"), 1))
    split_of = assign_splits(status["patient_id"].combine_chunks().filter(pa.array(ok)).to_numpy(zero_copy_only=False),
                             dc.split, cfg.seed)
    pat_keys = pa.array(list(split_of.keys()), pa.string())
    pat_vals = pa.array(list(split_of.values()), pa.string())

    def mark(batch: pa.Table) -> pa.Table:
        dup = pc.fill_null(pc.is_in(batch["record_id"], value_set=dup_ids), False)
        is_good = pc.and_(pc.is_null(batch["reject_reason"]), pc.invert(dup))
        reason = pc.if_else(pc.and_(pc.is_null(batch["reject_reason"]), dup),
                            "duplicated record_id (all copies quarantined)", batch["reject_reason"])
        field = pc.if_else(pc.and_(pc.is_null(batch["reject_field"]), dup), "record_id", batch["reject_field"])
        split = pc.take(pat_vals, pc.index_in(batch["patient_id"], value_set=pat_keys))
        split = pc.if_else(is_good, split, pa.nulls(batch.num_rows, pa.string()))
        return (batch.set_column(batch.schema.get_field_index("reject_reason"), "reject_reason", reason)
                .set_column(batch.schema.get_field_index("reject_field"), "reject_field", field)
                .append_column("split", split))

    marked = cleaned.map_batches(mark, batch_format="pyarrow").materialize()
    good = marked.filter(expr=col("reject_reason").is_null()).materialize()
    rejects = collect(marked.filter(expr=col("reject_reason").is_not_null()).select_columns(
        ["source", "record_id", "reject_field", "reject_reason"]))

    log.info("[%.1fs] split %d patients; %d duplicated record ids", time.perf_counter() - t0, len(split_of),
             len(dup_ids))
    # vocabularies: distributed counts, merged on the driver
    counts = collect(good.map_batches(count_batch, batch_format="pyarrow"))
    counts = counts.group_by(["kind", "token", "split"]).aggregate([("count", "sum")])
    drugs_all = counts.filter(pc.equal(counts["kind"], "drug"))
    drug_vocab = pc.unique(drugs_all["token"]).sort()
    docs = counts.filter(pc.and_(pc.equal(counts["kind"], "doc"), pc.equal(counts["split"], "train")))
    doc_vocab = docs["token"].combine_chunks().sort()
    num_drugs = len(drug_vocab)

    # co-occurrence on the training split: map-side partial counts, reduce on the driver
    train = good.filter(expr=col("split") == "train")
    parts = collect(train.map_batches(pairs_batch, batch_format="pyarrow", fn_kwargs={"drug_vocab": drug_vocab}))
    key, cnt = parts["key"].to_numpy(), parts["count"].to_numpy()
    item = np.zeros(num_drugs, np.int64)
    np.add.at(item, -1 - key[key < 0], cnt[key < 0])
    _, pkeys, pcounts = merge_counts([(np.zeros(num_drugs, np.int64), key[key >= 0], cnt[key >= 0])], num_drugs)
    cooc = cooccurrence_table(item, pkeys, pcounts, num_drugs)

    log.info("[%.1fs] vocabularies (%d drugs, %d words) and co-occurrence (%d pairs)", time.perf_counter() - t0,
             num_drugs, len(doc_vocab), len(pkeys))
    # relation matrix R over the drug vocabulary (interactions of unknown drugs are unused)
    ia = pc.index_in(inter["drug_a"], value_set=drug_vocab)
    ib = pc.index_in(inter["drug_b"], value_set=drug_vocab)
    known = pc.and_(pc.is_valid(ia), pc.is_valid(ib))
    rel_rows = inter.filter(known)
    src = ia.filter(known).to_numpy(zero_copy_only=False)
    dst = ib.filter(known).to_numpy(zero_copy_only=False)
    codes = rel_rows["code"].to_numpy(zero_copy_only=False)
    relation, conflicts = relation_table(src, dst, codes, num_drugs)

    built = good.map_batches(
        build_batch, batch_format="pyarrow",
        fn_kwargs={"drug_vocab": drug_vocab, "doc_vocab": doc_vocab, "relation": relation, "cooc": cooc,
                   "threshold": dc.build_threshold})
    fs, base = io.filesystem(out)
    built.write_parquet(io.join(base, "records"), filesystem=fs, partition_cols=["split"])

    log.info("[%.1fs] package graphs written", time.perf_counter() - t0)
    # small tables and the manifest
    drug_train = drugs_all.filter(pc.equal(drugs_all["split"], "train"))
    train_count = np.zeros(num_drugs, np.int64)
    idx = pc.index_in(drug_train["token"], value_set=drug_vocab).to_numpy(zero_copy_only=False)
    train_count[idx] = drug_train["count_sum"].to_numpy()
    ddi_names = pc.unique(pa.concat_arrays([inter["drug_a"].combine_chunks(), inter["drug_b"].combine_chunks()]))
    aligned = pc.is_in(drug_vocab, value_set=ddi_names).to_numpy(zero_copy_only=False)
    io.write_table(pa.table({"id": np.arange(num_drugs, dtype=np.int32), "name": drug_vocab,
                             "train_count": train_count, "aligned": aligned}), io.join(out, "vocab/drugs.parquet"))
    dtc = pc.take(docs["count_sum"], pc.index_in(doc_vocab, value_set=docs["token"]))
    io.write_table(pa.table({"id": np.arange(len(doc_vocab), dtype=np.int32), "token": doc_vocab, "train_count": dtc}),
                   io.join(out, "vocab/doc_words.parquet"))
    rk = relation.keys
    io.write_table(pa.table({"src": (rk // num_drugs).astype(np.int32), "dst": (rk % num_drugs).astype(np.int32),
                             "label": relation.values,
                             "description": _winning_descriptions(src, dst, codes, rel_rows["description"],
                                                                  num_drugs)}),
                   io.join(out, "relation.parquet"))
    ck = cooc.keys
    io.write_table(pa.table({"src": (ck // num_drugs).astype(np.int32), "dst": (ck % num_drugs).astype(np.int32),
                             "count": pcounts, "p": cooc.values}), io.join(out, "cooccurrence.parquet"))
    all_rejects = pa.concat_tables([
        pa.table({"source": rejects["source"], "row": pa.nulls(rejects.num_rows, pa.int64()),
                  "record_id": rejects["record_id"], "field": rejects["reject_field"],
                  "reason": rejects["reject_reason"]}, schema=REJECTS_SCHEMA),
        ddi_rejects.cast(REJECTS_SCHEMA),
    ])
    io.write_table(all_rejects, io.join(out, "rejects.parquet"))

    sizes = collect(good.map_batches(lambda b: pa.table({"n": pc.list_value_length(b["drugs"]),
                                                         "split": b["split"], "patient_id": b["patient_id"]}),
                                     batch_format="pyarrow"))
    split_stats = sizes.group_by("split").aggregate([([], "count_all")]).to_pylist()
    written = pads.dataset(io.join(base, "records"), filesystem=fs, format="parquet", partitioning="hive")
    edges_per = pc.list_value_length(written.to_table(columns=["edge_src"])["edge_src"]).to_numpy()
    label_counts = {name: int(np.sum(codes == c)) for c, name in LABEL_NAMES.items()}
    manifest = {
        "format": "dpr-dist/prepared/v1",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": {"emr": emr, "ddi": ddi},
        "seed": cfg.seed,
        "config": cfg.data.__dict__ | {"split": list(dc.split)},
        "build_threshold": dc.build_threshold,
        "table1": {
            "records": int(sizes.num_rows),
            "drugs": num_drugs,
            "disease_document_words": len(doc_vocab),
            "average_package_size": float(np.mean(sizes["n"].to_numpy())) if sizes.num_rows else 0.0,
            "aligned_drugs": int(aligned.sum()),
            "pairs_no_interaction": label_counts["none"],
            "pairs_synergism": label_counts["synergism"],
            "pairs_antagonism": label_counts["antagonism"],
        },
        "rows_read": int(marked.count()),
        "rejected": int(all_rejects.num_rows),
        "rejected_emr": int(rejects.num_rows),
        "rejected_ddi": int(ddi_rejects.num_rows),
        "reject_reasons": _reason_counts(all_rejects),
        "relation_conflicts": conflicts,
        "interaction_rows": int(inter.num_rows),
        "splits": {s["split"]: {"records": int(s["count_all"])} for s in split_stats},
        "patients": {s: int(len(set(sizes.filter(pc.equal(sizes["split"], s))["patient_id"].to_pylist())))
                     for s in SPLITS},
        "edges_per_graph": float(edges_per.mean()) if len(edges_per) else 0.0,
        "cooccurring_pairs": int(len(pkeys)),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    io.write_json(manifest, io.join(out, "manifest.json"))
    log.info("prepared %d records (%d rejected) in %.1fs -> %s", manifest["table1"]["records"],
             manifest["rejected"], manifest["seconds"], out)
    return manifest


def _winning_descriptions(src: np.ndarray, dst: np.ndarray, codes: np.ndarray, desc, num_drugs: int) -> pa.Array:
    """The description of the row whose label :func:`relation_table` kept for each ordered pair."""
    keys = src.astype(np.int64) * num_drugs + dst
    order = np.lexsort((-codes.astype(np.int16), keys))
    first = np.ones(len(keys), bool)
    first[1:] = keys[order][1:] != keys[order][:-1]
    desc = desc.combine_chunks() if isinstance(desc, pa.ChunkedArray) else desc
    return desc.take(pa.array(order[first])).cast(pa.string())


def _reason_counts(rejects: pa.Table) -> dict[str, int]:
    if rejects.num_rows == 0:
        return {}
    t = rejects.group_by(["field"]).aggregate([([], "count_all")])
    return {r["field"]: int(r["count_all"]) for r in t.to_pylist()}
