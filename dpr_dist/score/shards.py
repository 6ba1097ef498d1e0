"""The shards of a backlog (:mod:`dpr_dist.score.batch`): plan, read, commit, resume.

* :func:`plan_shards` cuts Parquet files into fixed shards of whole row groups; the plan
  is stored in ``out/_plan.json`` (:func:`load_plan`) so that a re-run keeps it;
* :func:`read_shards` reads shards as EMR-contract rows tagged with shard, row and file;
* :func:`commit` writes a finished shard's results and rejects atomically, then its marker
  ``out/_done/shard-XXXXX.json`` (the commit point); :func:`done_record` finds it again.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dpr_dist.data import io
from dpr_dist.data.schema import EMR_SCHEMA, REJECTS_SCHEMA, check_columns, conform
from dpr_dist.serve.inputs import PATIENT_REQUIRED, PATIENT_SCHEMA

WARNING_TYPE = pa.struct([("drug_1", pa.string()), ("drug_2", pa.string()), ("description", pa.string())])
#: One row per scored patient.
RESULT_SCHEMA = pa.schema([
    ("record_id", pa.string()), ("patient_id", pa.string()), ("package", pa.list_(pa.string())),
    ("drug_ids", pa.list_(pa.int32())), ("score", pa.float64()), ("warnings", pa.list_(WARNING_TYPE)),
    ("model", pa.string()), ("model_version", pa.string()),
])
#: What the scoring actors return: results and rejects of a batch, keyed by shard and row.
_OUT_SCHEMA = pa.schema([("_shard", pa.int64()), ("_row", pa.int64()), ("_source", pa.string())]
                        + list(RESULT_SCHEMA) + [("field", pa.string()), ("reason", pa.string())])
DUPLICATE_REASON = "duplicated record_id (all copies quarantined)"


@dataclass(frozen=True)
class Shard:
    """A fixed piece of the backlog: row groups ``row_groups`` of ``file``.

    Attributes:
        id: Shard number (names the output files).
        file: The Parquet file (local path or ``s3://`` URI).
        row_groups: Row groups of the file it covers.
        first_row: Row of the file where it starts.
        rows: Number of rows.
    """

    id: int
    file: str
    row_groups: tuple[int, ...]
    first_row: int
    rows: int

    @property
    def name(self) -> str:
        return f"shard-{self.id:05d}"


def plan_shards(input_uri: str, rows_per_shard: int = 4096) -> list[Shard]:
    """Cut a Parquet backlog into shards of whole row groups, about ``rows_per_shard`` rows.

    Raises:
        FileNotFoundError: when there is no Parquet file under ``input_uri``.
        SchemaError: when a file misses a required column or has one of the wrong type.
    """
    files = [f for f in io.list_files(input_uri) if io.file_format(f) == "parquet"]
    if not files:
        raise FileNotFoundError(f"no Parquet files under {input_uri} (the backlog must be Parquet)")
    shards: list[Shard] = []
    for f in files:
        fs, path = io.filesystem(f)
        with fs.open_input_file(path) as fh:
            meta = pq.ParquetFile(fh)
            check_columns(meta.schema_arrow, PATIENT_SCHEMA, PATIENT_REQUIRED, f"backlog file {f}")
            sizes = [meta.metadata.row_group(i).num_rows for i in range(meta.metadata.num_row_groups)]
        start, group, rows = 0, [], 0
        for i, n in enumerate(sizes):
            if group and rows + n > rows_per_shard:
                shards.append(Shard(len(shards), f, tuple(group), start, rows))
                start, group, rows = start + rows, [], 0
            group.append(i)
            rows += n
        if group and rows:
            shards.append(Shard(len(shards), f, tuple(group), start, rows))
    return shards


def duplicated_ids(files: list[str]) -> list[str]:
    """Record ids that occur more than once in the backlog (reads only that column)."""
    parts = []
    for f in files:
        fs, path = io.filesystem(f)
        parts.append(pq.read_table(path, columns=["record_id"], filesystem=fs)["record_id"].cast(pa.string()))
    ids = pa.chunked_array([c for p in parts for c in p.chunks], pa.string()).combine_chunks() if parts else \
        pa.array([], pa.string())
    ids = pc.utf8_trim_whitespace(ids).filter(pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(ids)),
                                                                       0), False))
    vc = pc.value_counts(ids)
    return vc.field("values").filter(pc.greater(vc.field("counts"), 1)).to_pylist()


def read_shards(batch: pa.Table, shards: dict[int, tuple[str, list[int], int]], fs: pafs.FileSystem) -> pa.Table:
    """Map function: the rows of the shards named in ``batch["shard"]``, with ``_shard``,
    ``_row`` (row in the file) and ``_source`` (the file) added; contract columns only."""
    out = []
    for sid in batch["shard"].to_pylist():
        file, groups, first = shards[sid]
        path = file[len("s3://"):] if io.is_s3(file) else file
        with fs.open_input_file(path) as fh:
            pf = pq.ParquetFile(fh)
            cols = [c for c in pf.schema_arrow.names if c in EMR_SCHEMA.names and c != "drugs"]
            t = pf.read_row_groups(list(groups), columns=cols)
        t = conform(t, PATIENT_SCHEMA, PATIENT_REQUIRED, f"backlog file {file}")
        n = t.num_rows
        t = t.append_column("_shard", pa.array(np.full(n, sid, np.int64)))
        t = t.append_column("_row", pa.array(np.arange(first, first + n, dtype=np.int64)))
        out.append(t.append_column("_source", pa.array([file] * n, pa.string())))
    return pa.concat_tables(out, promote_options="permissive")


def write_atomic(data: bytes | pa.Table, uri: str) -> None:
    """Write a file so that readers see all of it or nothing (rename locally, one PUT on S3)."""
    fs, path = io.filesystem(uri)
    if io.is_s3(uri):
        tmp = path
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
    if isinstance(data, pa.Table):
        pq.write_table(data, tmp, filesystem=fs)
    else:
        with fs.open_output_stream(tmp) as fh:
            fh.write(data)
    if tmp != path:
        os.replace(tmp, path)


def commit(out: str, shard: Shard, table: pa.Table, seconds: float) -> dict[str, Any]:
    table = table.sort_by("_row")
    ok = pc.is_null(table["reason"])
    results = table.filter(ok).select(RESULT_SCHEMA.names).cast(RESULT_SCHEMA)
    bad = table.filter(pc.invert(ok))
    rejects = pa.table({"source": bad["_source"], "row": bad["_row"], "record_id": bad["record_id"],
                        "field": bad["field"], "reason": bad["reason"]}, schema=REJECTS_SCHEMA)
    write_atomic(results, io.join(out, "results", f"{shard.name}.parquet"))
    write_atomic(rejects, io.join(out, "rejects", f"{shard.name}.parquet"))
    done = {"shard": shard.id, "file": shard.file, "rows": shard.rows, "scored": results.num_rows,
            "rejected": rejects.num_rows, "seconds": round(seconds, 3)}
    if done["scored"] + done["rejected"] != shard.rows:
        raise RuntimeError(f"{shard.name}: {done['scored']} scored + {done['rejected']} rejected != {shard.rows} rows")
    write_atomic(json.dumps(done).encode(), io.join(out, "_done", f"{shard.name}.json"))
    return done


def done_record(out: str, shard: Shard) -> dict[str, Any] | None:
    marker = io.join(out, "_done", f"{shard.name}.json")
    if io.exists(marker) and io.exists(io.join(out, "results", f"{shard.name}.parquet")):
        return io.read_json(marker)
    return None


def load_plan(out: str, input_uri: str, rows_per_shard: int, model_dir: str, version: str,
              pick: str = "score") -> list[Shard]:
    """The shards of ``out``'s stored plan, or a new plan written there.

    Raises:
        ValueError: when ``out`` holds a plan of another backlog, another model version or
            another ``pick`` rule (plans written before the rule was recorded read ``score``).
    """
    plan_uri = io.join(out, "_plan.json")
    shards = plan_shards(input_uri, rows_per_shard)
    files = sorted({(s.file, sum(x.rows for x in shards if x.file == s.file)) for s in shards})
    if io.exists(plan_uri):
        plan = io.read_json(plan_uri)
        if [tuple(f) for f in plan["files"]] != files:
            raise ValueError(f"{out} holds results of another backlog ({plan['input']}); use a new output directory")
        if plan["model_version"] != version:
            raise ValueError(f"{out} was scored with model version {plan['model_version']} ({plan['model_dir']}), "
                             f"not {version}; use a new output directory")
        if plan.get("pick", "score") != pick:
            raise ValueError(f"{out} was scored picking by {plan.get('pick', 'score')}, not {pick}; use a new "
                             "output directory")
        return [Shard(s["id"], s["file"], tuple(s["row_groups"]), s["first_row"], s["rows"]) for s in plan["shards"]]
    plan = {"input": input_uri, "files": files, "rows_per_shard": rows_per_shard, "model_dir": model_dir,
            "model_version": version, "pick": pick, "shards": [asdict(s) for s in shards]}
    write_atomic(json.dumps(plan, indent=1).encode(), plan_uri)
    return shards
