"""``dpr pipeline`` and ``dpr experiment`` on the command line: their help, a real pipeline run
of three cheap models on tiny data, and errors reported before any work."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dpr_dist.cli import main
from dpr_dist.models.type_targets import relation_pairs
from dpr_dist.train.modeldir import load_model_dir
from dpr_dist.train.prepared import read_records

REPO = Path(__file__).resolve().parents[2]


def _help(command: str, dpr_stdout) -> str:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    return dpr_stdout()


def test_pipeline_help_documents_inputs_models_and_outputs(dpr_stdout):
    out = _help("pipeline", dpr_stdout)
    assert out.startswith("usage: dpr pipeline")
    for text in ("--emr", "--ddi", "--out", "--models", "--config", "--seed", "metrics.json", "predictions.parquet",
                 "ncf,nn,package2vec,lda,br,dam,gnn,wg,ag", "popularity", "example:"):
        assert text in out, text


def test_experiment_help_lists_every_experiment_and_option(dpr_stdout):
    out = _help("experiment", dpr_stdout)
    assert out.startswith("usage: dpr experiment")
    for text in ("table4", "table5", "table6", "fig6", "fig7", "fig8", "case", "generation", "--which", "--seeds",
                 "--thresholds", "--negatives", "--layers", "--group", "--tsne-patients", "--patient", "--config",
                 "--set", "report.md"):
        assert text in out, text


def test_unknown_model_is_an_error_before_any_work(tmp_path, capsys):
    code = main(["pipeline", "--emr", str(tmp_path / "emr"), "--ddi", str(tmp_path / "ddi.parquet"), "--out",
                 str(tmp_path / "out"), "--models", "ncf,dpr9"])
    assert code == 2
    err = capsys.readouterr().err
    assert "dpr pipeline: error:" in err and "dpr9" in err
    assert not (tmp_path / "out").exists()


def test_experiment_bad_option_is_an_error(tmp_path, capsys):
    assert main(["experiment", "--out", str(tmp_path / "x"), "--which", "table9"]) == 2
    assert "table9" in capsys.readouterr().err


@pytest.mark.slow
def test_pipeline_command_writes_metrics_and_predictions(pipeline_run, tmp_path, capsys):
    """``dpr pipeline`` of NCF, NN and popularity in a fresh directory. The session pipeline's
    prepared data and NCF pre-training (same inputs, config and seed) are copied in, so the
    command reuses them and starts no Ray Train run: NN has nothing to train and is
    validated on the driver."""
    out = tmp_path / "out"
    shutil.copytree(pipeline_run["out"] / "prepared", out / "prepared")
    shutil.copytree(pipeline_run["out"] / "runs" / "tiny-ncf", out / "runs" / "tiny-ncf")
    code = main(["pipeline", "--emr", pipeline_run["emr"], "--ddi", pipeline_run["ddi"], "--out", str(out),
                 "--models", "ncf,nn,popularity", "--config", str(REPO / "configs" / "tiny.yaml"), "--seed", "0",
                 "--set", "train.epochs=1", "--set", "train.pretrain_epochs=1", "--mbr"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"metrics -> {out / 'metrics.json'}" in printed

    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["ncf", "nn", "nn+mbr", "popularity"]  # NN's expected-F1 pick: the medoid
    assert metrics["nn+mbr"]["mbr_temperature"] == 1.0
    test = read_records(str(out / "prepared"), "test")
    for name, m in metrics.items():
        assert m["n"] == test.num_rows and 0 <= m["f1"] <= 1, name
    assert metrics["nn"]["f1"] <= metrics["nn"]["ceiling_f1"] + 1e-12
    assert metrics["ncf"]["ceiling_f1"] is None and metrics["popularity"]["ceiling_f1"] is None

    pred = pq.read_table(out / "predictions.parquet")
    assert pred.column_names == ["record_id", "model", "drugs"]
    assert pred.num_rows == 4 * test.num_rows
    names = pq.read_table(out / "prepared" / "vocab" / "drugs.parquet")["name"].to_pylist()
    true = {rid: {names[i] for i in ids} for rid, ids in zip(test["record_id"].to_pylist(),
                                                             test["drug_ids"].to_pylist())}
    for model in metrics:  # the F1 of metrics.json, recomputed from the drug names
        rows = pred.filter(pc.equal(pred["model"], model)).to_pylist()
        assert {r["record_id"] for r in rows} == set(true)
        f1 = []
        for r in rows:
            got, want = set(r["drugs"]), true[r["record_id"]]
            hit = len(got & want)
            p, rec = (hit / len(got) if got else 0.0), (hit / len(want) if want else 0.0)
            f1.append(2 * p * rec / (p + rec) if p + rec else 0.0)
        assert metrics[model]["f1"] == pytest.approx(np.mean(f1), abs=1e-12), model
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["tiny-ncf", "tiny-nn"]  # pre-training reused
    assert [p.name for p in (out / "runs" / "tiny-nn").iterdir()] == ["model"]  # no Train run for NN
    popular = pred.filter(pc.equal(pred["model"], "popularity"))["drugs"].to_pylist()
    assert all(d == popular[0] for d in popular)  # the same K most frequent drugs for everyone


@pytest.mark.slow
def test_evaluate_command_reports_the_type_head(pipeline_run, dpr_stdout):
    """``dpr evaluate`` on a DPR-AG directory says what its edge attributes know of R's types."""
    model_dir = pipeline_run["result"]["model_dirs"]["ag"]
    assert main(["evaluate", "--model-dir", model_dir, "--split", "val"]) == 0
    printed = dpr_stdout()
    n = relation_pairs(load_model_dir(model_dir).relation)[2].size
    assert f"ag type head (eq. 21, model.type_targets: graph): on all {n:,} labelled pairs of R" in printed
    assert re.search(r"recall per type: none [01]\.\d\d, synergism [01]\.\d\d, antagonism [01]\.\d\d", printed)


@pytest.mark.slow
def test_evaluate_command_with_generation(pipeline_run, tmp_path, dpr_stdout):
    """``dpr evaluate --generate --mbr`` on the session pipeline's DPR-WG directory: the model's
    own pick (from S1), NCF, the pick of highest expected F1, and the picks from the generated
    set S, whose metrics are recomputed here from the predictions it writes."""
    out = tmp_path / "eval"
    model_dir = pipeline_run["result"]["model_dirs"]["wg"]
    assert main(["evaluate", "--model-dir", model_dir, "--models", "wg,ncf", "--generate", "--mbr", "--out",
                 str(out)]) == 0
    printed = dpr_stdout()
    assert "wg+S: picked from S = S1 ∪ S2 ∪ S3 (paper section 6)" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["wg", "ncf", "wg+mbr", "wg+S", "wg+S+mbr"]
    assert metrics["wg+mbr"]["mbr_temperature"] == metrics["wg+S+mbr"]["mbr_temperature"] == 1.0
    assert metrics["wg+mbr"]["ceiling_f1"] == metrics["wg"]["ceiling_f1"]
    gen, own = metrics["wg+S"], metrics["wg"]
    assert 0 <= gen["picked_generated"] <= 1 and gen["mean_s"] >= gen["mean_s1"] > 0
    assert gen["ceiling_f1"] >= own["ceiling_f1"] - 1e-12  # S holds S1, so its best pick is at least as good
    pred = pq.read_table(out / "predictions.parquet")
    test = read_records(str(pipeline_run["out"] / "prepared"), "test")
    names = pq.read_table(pipeline_run["out"] / "prepared" / "vocab" / "drugs.parquet")["name"].to_pylist()
    true = {r: {names[i] for i in ids} for r, ids in zip(test["record_id"].to_pylist(), test["drug_ids"].to_pylist())}
    for name in ("wg+S", "wg+mbr", "wg+S+mbr"):
        rows = pred.filter(pc.equal(pred["model"], name)).to_pylist()
        assert len(rows) == test.num_rows == metrics[name]["n"]
        f1 = []
        for r in rows:
            got, want = set(r["drugs"]), true[r["record_id"]]
            hit = len(got & want)
            f1.append(2 * hit / (len(got) + len(want)) if got or want else 0.0)
        assert metrics[name]["f1"] == pytest.approx(np.mean(f1), abs=1e-12), name
