"""Batch scoring: counts, rejects, agreement with the evaluator, resuming after a kill, S3."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from modeldirs import build_model_dir  # noqa: E402

from dpr_dist.data import io  # noqa: E402
from dpr_dist.eval.evaluate import evaluate, evaluate_models  # noqa: E402
from dpr_dist.score.batch import RESULT_SCHEMA, plan_shards, score_backlog  # noqa: E402
from dpr_dist.serve.model import model_version  # noqa: E402
from dpr_dist.train.modeldir import load_model_dir  # noqa: E402
from dpr_dist.train.prepared import read_records  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
#: Planted bad rows: (how it is broken, the field its reject must name).
PLANTED = ("age", "gender", "labs", "record_id", "dup")


@pytest.fixture(scope="module")
def model_dir(tiny_prepared, tmp_path_factory) -> str:
    return build_model_dir(str(tiny_prepared["dir"]), str(tmp_path_factory.mktemp("m") / "ag"), "ag", seed=3)


@pytest.fixture(scope="module")
def backlog(tiny_data, tiny_prepared, tmp_path_factory) -> dict:
    """The test split's raw rows (``drugs`` dropped) plus planted bad rows, in 2 files / 6 shards of 8 rows."""
    test = read_records(str(tiny_prepared["dir"]), "test")
    emr = tiny_data["emr_table"]
    good = emr.filter(pc.is_in(emr["record_id"], value_set=test["record_id"])).drop_columns(["drugs"])
    bad = good.slice(0, len(PLANTED)).to_pylist()
    bad[0].update(record_id="BAD-age", age=131.0)
    bad[1].update(record_id="BAD-gender", gender=None)
    bad[2].update(record_id="BAD-labs", labs=[{"name": "K", "value": 4.0, "ref_low": 5.0, "ref_high": 3.0,
                                                "flag": None}])
    bad[3].update(record_id="  ")
    bad[4].update(record_id="DUP")
    bad.append({**bad[4]})  # the same record id twice: both copies are rejected
    schema = pa.schema([f.with_nullable(True) for f in good.schema])  # a backlog may hold nulls anywhere
    table = pa.Table.from_pylist(good.to_pylist() + bad, schema=schema)
    order = np.random.default_rng(0).permutation(table.num_rows)
    table = table.take(pa.array(order))
    root = tmp_path_factory.mktemp("backlog")
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), root / "part-0.parquet", row_group_size=4)
    pq.write_table(table.slice(half), root / "part-1.parquet", row_group_size=4)
    return {"dir": str(root), "rows": table.num_rows, "good_ids": test["record_id"].to_pylist(), "test": test}


def run_in_subprocess(code: str, ray_session) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python joined to the session's Ray cluster."""
    address = ray_session.get_runtime_context().gcs_address
    prelude = f"import ray, sys; sys.path.insert(0, {str(REPO)!r}); ray.init(address={address!r}, log_to_driver=False)\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=300)


def test_plan_cuts_whole_row_groups(backlog):
    shards = plan_shards(backlog["dir"], rows_per_shard=8)
    assert sum(s.rows for s in shards) == backlog["rows"] and len(shards) >= 4
    assert [s.id for s in shards] == list(range(len(shards)))
    for s in shards:
        assert s.rows <= 8 or len(s.row_groups) == 1


@pytest.mark.slow
def test_counts_rejects_and_the_evaluators_choices(ray_session, backlog, model_dir, tmp_path):
    out = str(tmp_path / "out")
    summary = score_backlog(model_dir, backlog["dir"], out, rows_per_shard=8, batch_size=16)
    assert summary["read"] == backlog["rows"] == summary["scored"] + summary["rejected"]
    assert summary["rejected"] == len(PLANTED) + 1 and summary["shards_skipped"] == 0
    results = io.read_table(io.join(out, "results"))
    rejects = io.read_table(io.join(out, "rejects"))
    assert results.schema.equals(RESULT_SCHEMA)
    assert sorted(results["record_id"].to_pylist()) == sorted(backlog["good_ids"])  # one result per record
    by_field = {}
    for r in rejects.to_pylist():
        by_field.setdefault(r["field"], []).append(r)
        assert r["source"].endswith(".parquet") and r["row"] >= 0 and r["reason"]
    assert sorted(r["record_id"] for r in by_field["age"]) == ["BAD-age"]
    assert sorted(r["record_id"] for r in by_field["gender"]) == ["BAD-gender"]
    assert sorted(r["record_id"] for r in by_field["labs"]) == ["BAD-labs"]
    assert sorted(r["record_id"] for r in by_field["record_id"]) == ["  ", "DUP", "DUP"]
    # the row numbers point at the rejected rows of their files
    for r in by_field["age"]:
        assert pq.read_table(r["source"]).slice(r["row"], 1)["record_id"].to_pylist() == ["BAD-age"]
    # the same package as the evaluator picks for the same patients
    _, pred = evaluate(load_model_dir(model_dir), backlog["test"])
    want = dict(zip(pred["record_id"].to_pylist(), pred["drugs"].to_pylist()))
    got = dict(zip(results["record_id"].to_pylist(), results["package"].to_pylist()))
    assert got == want
    assert np.isfinite(results["score"].to_numpy()).all()
    assert set(results["model_version"].to_pylist()) == {model_version(model_dir)}
    bundle = load_model_dir(model_dir)
    rel = bundle.relation_matrix()
    names = np.asarray(bundle.drugs["name"].to_pylist())
    for ids, warns in zip(results["drug_ids"].to_pylist(), results["warnings"].to_pylist()):
        sub = rel[np.ix_(ids, ids)]
        anta = {frozenset((names[ids[a]], names[ids[b]])) for a, b in zip(*np.nonzero(sub == 2))}
        assert {frozenset((w["drug_1"], w["drug_2"])) for w in warns} == anta


@pytest.mark.slow
def test_killed_job_resumes_without_rescoring_or_losing_shards(ray_session, backlog, model_dir, tmp_path):
    out = str(tmp_path / "out")
    proc = run_in_subprocess(f"""
        import os
        from dpr_dist.score.batch import score_backlog
        done = []
        def die(rec):
            done.append(rec)
            if len(done) == 2:
                os._exit(137)  # killed: no cleanup, no summary
        score_backlog({model_dir!r}, {backlog['dir']!r}, {out!r}, rows_per_shard=8, batch_size=16,
                      on_shard_done=die)
    """, ray_session)
    assert proc.returncode == 137, proc.stderr[-3000:]
    markers = sorted(os.listdir(os.path.join(out, "_done")))
    assert len(markers) == 2 and not os.path.exists(os.path.join(out, "summary.json"))
    first = {m: os.stat(os.path.join(out, "results", m.replace(".json", ".parquet"))).st_mtime_ns for m in markers}
    # a half-written file of a crashed write is ignored and later replaced
    shards = plan_shards(backlog["dir"], rows_per_shard=8)
    pending = next(s for s in shards if f"{s.name}.json" not in markers)
    Path(out, "results", f".{pending.name}.parquet.tmp-dead").write_bytes(b"PAR1 partial")
    Path(out, "results", f"{pending.name}.parquet").write_bytes(b"PAR1 partial, no marker")

    summary = score_backlog(model_dir, backlog["dir"], out, rows_per_shard=999)  # the stored plan wins
    assert summary["shards_skipped"] == 2 and summary["shards_scored"] == summary["shards"] - 2
    assert summary["read"] == backlog["rows"] == summary["scored"] + summary["rejected"]
    for m, t in first.items():  # finished shards were not scored again
        assert os.stat(os.path.join(out, "results", m.replace(".json", ".parquet"))).st_mtime_ns == t
    results = io.read_table(io.join(out, "results"))
    ids = results["record_id"].to_pylist()
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(backlog["good_ids"])
    again = score_backlog(model_dir, backlog["dir"], out)
    assert again["shards_scored"] == 0 and again["read"] == summary["read"]


@pytest.mark.slow
def test_ranking_by_expected_f1_and_output_of_another_model_or_rule_refused(ray_session, backlog, model_dir,
                                                                             tiny_prepared, tmp_path):
    out = str(tmp_path / "out")
    summary = score_backlog(model_dir, backlog["dir"], out, rows_per_shard=1000, rank_by="expected_f1",
                            temperature=20.0)
    assert summary["pick"] == "expected_f1 (T=20)"
    # the same package as dpr evaluate --mbr 20 picks (T = 20: the untrained model's scores spread over tens)
    _, pred = evaluate_models(load_model_dir(model_dir), backlog["test"], ["ag"], mbr_temperature=20.0)
    mbr = pred.filter(pc.equal(pred["model"], "ag+mbr"))
    results = io.read_table(io.join(out, "results"))
    assert dict(zip(results["record_id"].to_pylist(), results["package"].to_pylist())) == \
        dict(zip(mbr["record_id"].to_pylist(), mbr["drugs"].to_pylist()))
    with pytest.raises(ValueError, match=r"scored picking by expected_f1 \(T=20\), not score"):
        score_backlog(model_dir, backlog["dir"], out)
    with pytest.raises(ValueError, match="serve.rank_by='best' must be one of"):
        score_backlog(model_dir, backlog["dir"], str(tmp_path / "new"), rank_by="best")
    other = build_model_dir(str(tiny_prepared["dir"]), str(tmp_path / "wg"), "wg", seed=4)
    with pytest.raises(ValueError, match="scored with model version"):
        score_backlog(other, backlog["dir"], out)


@pytest.mark.slow
def test_backlog_and_results_on_s3(ray_session, s3_server, backlog, model_dir):
    import pyarrow.fs as pafs

    fs, _ = io.filesystem("s3://dpr/backlog")
    pafs.copy_files(backlog["dir"], "dpr/backlog", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    summary = score_backlog(model_dir, "s3://dpr/backlog", "s3://dpr/scored", rows_per_shard=1000)
    assert summary["read"] == backlog["rows"] and summary["rejected"] == len(PLANTED) + 1
    results = io.read_table("s3://dpr/scored/results")
    assert sorted(results["record_id"].to_pylist()) == sorted(backlog["good_ids"])
    assert score_backlog(model_dir, "s3://dpr/backlog", "s3://dpr/scored")["shards_scored"] == 0


def test_job_script_parses_its_arguments():
    import runpy

    parse = runpy.run_path(str(REPO / "jobs" / "batch_score.py"), run_name="jobs.batch_score")["parse"]
    args = parse(["--model-dir", "m", "--input", "s3://b/backlog", "--out", "o", "--num-actors", "3"])
    assert (args.model_dir, args.input, args.out, args.num_actors, args.rows_per_shard, args.num_gpus) == \
        ("m", "s3://b/backlog", "o", 3, 4096, None)
    assert (args.rank_by, args.temperature) == ("score", 1.0)
    args = parse(["--model-dir", "m", "--input", "i", "--out", "o", "--rank-by", "expected_f1", "--temperature", "2"])
    assert (args.rank_by, args.temperature) == ("expected_f1", 2.0)
    with pytest.raises(SystemExit):
        parse(["--model-dir", "m"])  # --input and --out are required
