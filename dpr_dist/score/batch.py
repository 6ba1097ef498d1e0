"""Batch scoring of patient backlogs on Ray Data (``dpr score``).

A backlog is Parquet in the EMR contract (``drugs`` not needed; file, directory or
``s3://`` prefix). The job

1. plans fixed *shards*: runs of whole Parquet row groups of one file, about
   ``rows_per_shard`` rows each, and stores the plan in ``out/_plan.json``;
2. reads the shards that are not done yet (Ray tasks), and recommends a package for each
   patient with an actor pool holding the model (``map_batches(BacklogScorer,
   compute=ActorPoolStrategy(size=N))``, one GPU per actor when the cluster has GPUs):
   rows failing the contract's rules (and every copy of a repeated ``record_id``) become
   rejects naming the record and the field;
3. commits each shard once all of its rows are back: ``out/results/shard-XXXXX.parquet``
   (``record_id``, ``patient_id``, ``package`` (drug names), ``drug_ids``, ``score`` (the
   package model's score of the recommended package),
   ``warnings`` (antagonistic pairs), ``model``, ``model_version``),
   ``out/rejects/shard-XXXXX.parquet`` (:data:`~dpr_dist.data.schema.REJECTS_SCHEMA`, ``row``
   = row in the file), each written atomically (temporary name, then rename; a single PUT
   on S3), then the marker ``out/_done/shard-XXXXX.json`` with the counts.

The recommended package is the first of the patient's candidate set in ``rank_by`` order
(:attr:`~dpr_dist.config.ServeConfig.rank_by`, as the HTTP service): the best-scoring
candidate (the paper's rule, default) or the one of highest expected F1
(``rank_by="expected_f1"``, :mod:`dpr_dist.eval.mbr`).

A re-run (after a crash or a kill) reads the plan, skips every shard with a marker and
redoes the others, so no shard is scored twice and none is lost. The job reports progress
per shard and a final summary (``read == scored + rejected``), also written to
``out/summary.json``. Re-running into an ``out`` made from another backlog, another
model version or another ``rank_by`` is refused.

Planning, reading and committing shards live in :mod:`dpr_dist.score.shards`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpr_dist.config import check_rank_by
from dpr_dist.data import io
from dpr_dist.score.shards import (
    _OUT_SCHEMA, DUPLICATE_REASON, RESULT_SCHEMA, WARNING_TYPE, Shard, commit, done_record, duplicated_ids, load_plan,
    plan_shards, read_shards)
from dpr_dist.serve.model import model_version
from dpr_dist.serve.service import DPRService

__all__ = ["RESULT_SCHEMA", "WARNING_TYPE", "BacklogScorer", "Shard", "plan_shards", "read_shards", "score_backlog"]

log = logging.getLogger(__name__)


class BacklogScorer:
    """Actor of the scoring pool: holds the model, recommends one package per row.

    Args:
        model_dir: The model directory (local or ``s3://``).
        duplicates: Record ids repeated in the backlog (rejected).
        device: ``cuda`` on a GPU actor, else None (CPU).
        rank_by, temperature: Which candidate is recommended (:class:`~dpr_dist.config.ServeConfig`).
    """

    def __init__(self, model_dir: str, duplicates: list[str], device: str | None = None, rank_by: str = "score",
                 temperature: float = 1.0) -> None:
        self.service = DPRService.load(model_dir, device=device, rank_by=rank_by, temperature=temperature)
        self.duplicates = pa.array(duplicates, pa.string())

    def __call__(self, batch: pa.Table) -> pa.Table:
        meta = batch.select(["_shard", "_row", "_source"])
        prepared, rejects = self.service.prepare(batch.drop_columns(["_shard", "_row", "_source"]))
        dup = pc.fill_null(pc.is_in(pc.utf8_trim_whitespace(prepared["record_id"]), value_set=self.duplicates), False)
        dup_rows = prepared["row"].filter(dup).to_numpy()
        prepared = prepared.filter(pc.invert(dup))
        rows = prepared["row"].to_numpy()
        if len(rows):
            packages, scores = self.service.pick(prepared)
        else:
            packages, scores = [], np.zeros(0)
        n_ok = len(rows)
        bad_rows = np.concatenate([rejects["row"].to_numpy(), dup_rows]).astype(np.int64)
        fields = rejects["field"].to_pylist() + ["record_id"] * len(dup_rows)
        reasons = rejects["reason"].to_pylist() + [DUPLICATE_REASON] * len(dup_rows)
        svc = self.service
        sizes = np.fromiter((len(p) for p in packages), np.int64, n_ok)
        flat = np.concatenate(packages).astype(np.int64) if sizes.sum() else np.zeros(0, np.int64)
        offsets = pa.array(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32))
        warns = [[{k: w[k] for k in ("drug_1", "drug_2", "description")} for w in svc.warnings(p)] for p in packages]
        take = np.concatenate([rows, bad_rows]).astype(np.int64)
        n_bad = len(bad_rows)
        rid = batch["record_id"].take(pa.array(take)).cast(pa.string())
        pid = batch["patient_id"].take(pa.array(take)).cast(pa.string())
        return pa.table({
            "_shard": meta["_shard"].take(pa.array(take)), "_row": meta["_row"].take(pa.array(take)),
            "_source": meta["_source"].take(pa.array(take)), "record_id": rid, "patient_id": pid,
            "package": pa.concat_arrays([pa.ListArray.from_arrays(offsets, pa.array(svc.names[flat].tolist(),
                                                                                  pa.string())),
                                         pa.nulls(n_bad, pa.list_(pa.string()))]),
            "drug_ids": pa.concat_arrays([pa.ListArray.from_arrays(offsets, pa.array(flat.astype(np.int32))),
                                          pa.nulls(n_bad, pa.list_(pa.int32()))]),
            "score": pa.array(np.concatenate([scores, np.full(n_bad, np.nan)]), pa.float64()),
            "warnings": pa.concat_arrays([pa.array(warns, pa.list_(WARNING_TYPE)),
                                          pa.nulls(n_bad, pa.list_(WARNING_TYPE))]),
            "model": pa.array([svc.bundle.model_name] * n_ok + [None] * n_bad, pa.string()),
            "model_version": pa.array([svc.version] * n_ok + [None] * n_bad, pa.string()),
            "field": pa.array([None] * n_ok + fields, pa.string()),
            "reason": pa.array([None] * n_ok + reasons, pa.string()),
        }, schema=_OUT_SCHEMA)



# ----------------------------------------------------------------------------- the job
def score_backlog(model_dir: str, input_uri: str, out: str, *, num_actors: int = 1, rows_per_shard: int = 4096,
                  batch_size: int = 512, num_gpus: float | None = None, rank_by: str = "score",
                  temperature: float = 1.0,
                  on_shard_done: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Recommend a package for every patient of a backlog; resumable (see the module docstring).

    Args:
        model_dir: Model directory (local or ``s3://``).
        input_uri: Backlog: Parquet file or directory (local or ``s3://``).
        out: Output directory (local or ``s3://``).
        num_actors: Size of the scoring actor pool.
        rows_per_shard: Target shard size of a new plan (a resumed run keeps its plan).
        batch_size: Patients per model call.
        num_gpus: GPUs per actor (default: 1 when the cluster has GPUs, else 0).
        rank_by: ``score`` (the paper's pick) or ``expected_f1``; ``temperature`` is its ``T``.
        on_shard_done: Called with each committed shard's counts (progress hook).

    Returns:
        ``read``, ``scored``, ``rejected`` (``read == scored + rejected``), ``shards``,
        ``shards_skipped`` (done before this run), ``shards_scored``, ``seconds``,
        ``rows_per_second`` (this run), ``out``.
    """
    import ray

    from dpr_dist.runtime import ensure_ray

    t0 = time.perf_counter()
    check_rank_by(rank_by, temperature)
    version = model_version(model_dir)  # bad paths fail here, before Ray starts
    pick = rank_by if rank_by == "score" else f"{rank_by} (T={float(temperature):g})"
    shards = load_plan(out, input_uri, rows_per_shard, model_dir, version, pick)
    by_id = {s.id: s for s in shards}
    done = {s.id: d for s in shards if (d := done_record(out, s)) is not None}
    pending = [s for s in shards if s.id not in done]
    log.info("backlog %s: %d shards, %d rows; %d shards already done, %d to score", input_uri, len(shards),
             sum(s.rows for s in shards), len(done), len(pending))
    if pending:
        ensure_ray()
        if num_gpus is None:
            num_gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        fs, _ = io.filesystem(input_uri)
        dups = duplicated_ids(sorted({s.file for s in shards}))
        ds = ray.data.from_items([{"shard": s.id} for s in pending], override_num_blocks=len(pending))
        ds = ds.map_batches(read_shards, batch_size=1, batch_format="pyarrow",
                            fn_kwargs={"shards": {s.id: (s.file, list(s.row_groups), s.first_row) for s in pending},
                                       "fs": fs})
        ds = ds.map_batches(BacklogScorer, compute=ray.data.ActorPoolStrategy(size=num_actors), batch_size=batch_size,
                            batch_format="pyarrow", num_gpus=num_gpus, num_cpus=0 if num_gpus else 1,
                            fn_constructor_kwargs={"model_dir": model_dir, "duplicates": dups,
                                                   "device": "cuda" if num_gpus else None, "rank_by": rank_by,
                                                   "temperature": float(temperature)})
        parts: dict[int, list[pa.Table]] = defaultdict(list)
        got: dict[int, int] = defaultdict(int)
        t_run, rows_run = time.perf_counter(), 0
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            sid = batch["_shard"].to_numpy()
            for s in np.unique(sid):
                part = batch.filter(pa.array(sid == s))
                parts[int(s)].append(part)
                got[int(s)] += part.num_rows
                shard = by_id[int(s)]
                if got[int(s)] == shard.rows:
                    rec = commit(out, shard, pa.concat_tables(parts.pop(int(s))), time.perf_counter() - t_run)
                    done[shard.id] = rec
                    rows_run += shard.rows
                    rate = rows_run / max(time.perf_counter() - t_run, 1e-9)
                    log.info("%s done: %d scored, %d rejected; %d/%d shards, %.0f patients/s", shard.name,
                             rec["scored"], rec["rejected"], len(done), len(shards), rate)
                    if on_shard_done is not None:
                        on_shard_done(rec)
        missing = [s.name for s in shards if s.id not in done]
        if missing:
            raise RuntimeError(f"shards {missing[:5]} came back incomplete; re-run to finish them")
    seconds = time.perf_counter() - t0
    scored_now = [done[s.id] for s in pending]
    summary = {
        "read": int(sum(d["rows"] for d in done.values())),
        "scored": int(sum(d["scored"] for d in done.values())),
        "rejected": int(sum(d["rejected"] for d in done.values())),
        "shards": len(shards), "shards_skipped": len(shards) - len(pending), "shards_scored": len(pending),
        "seconds": round(seconds, 2),
        "rows_per_second": round(sum(d["rows"] for d in scored_now) / seconds, 1) if scored_now else 0.0,
        "model_version": version, "pick": pick, "out": out,
    }
    io.write_json(summary, io.join(out, "summary.json"))
    log.info("scored %d of %d patients (%d rejected) -> %s", summary["scored"], summary["read"], summary["rejected"],
             out)
    return summary
