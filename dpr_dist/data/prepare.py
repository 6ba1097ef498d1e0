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

This module is the orchestration: it runs the steps in order on Ray Data and the driver
and writes the output. The inputs are read by :mod:`prepare_inputs`; the per-batch work
lives in pure functions (:mod:`graphs`, :mod:`documents`, :mod:`prepare_batches`) so the
same steps run without Ray in ``benchmarks/prepare.py``'s single-process reference.
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
from dpr_dist.data.graphs import cooccurrence_table, merge_counts, relation_table
from dpr_dist.data.prepare_batches import build_batch, clean_batch, count_batch, pairs_batch, unique_drug_names
from dpr_dist.data.prepare_inputs import LABEL_NAMES, load_interactions, make_normalizer, read_emr_dataset
from dpr_dist.data.schema import DDI_REQUIRED, DDI_SCHEMA, EMR_REQUIRED, EMR_SCHEMA, REJECTS_SCHEMA, check_columns

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


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
