"""Reusing earlier experiment rows: fingerprints, loading, matching, and a report rebuilt from
the tiny experiment's ``results.json`` with no run trained."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from dpr_dist.config import Config, load_config
from dpr_dist.eval.experiment_options import ExperimentOptions
from dpr_dist.eval.experiment_store import ADDED_LATER, Reuse, config_fingerprint, data_fingerprint, load_results, match
from dpr_dist.eval.experiments import run_experiments


def test_config_fingerprint_ignores_paths_names_and_scheduling():
    cfg = load_config(None)
    fp = config_fingerprint(cfg)
    same = cfg.with_overrides(["train.storage_path=s3://b/runs", "train.name=other", "train.parallel_runs=4",
                               "data.prepared=/elsewhere", "data.emr=x", "model.name=wg", "eval.batch_size=7",
                               "synth.records=99", "serve.port=9"])
    assert config_fingerprint(same) == fp and len(fp) == 64
    for change in ("train.epochs=9", "train.seed=3", "data.threshold=0.05", "model.gnn_layers=2",
                   "eval.neighbors=30", "train.num_workers=3"):
        assert config_fingerprint(cfg.with_overrides([change])) != fp, change


def test_settings_added_later_keep_old_fingerprints():
    """A setting added after fingerprints were recorded does not change them at its default,
    so rows measured before it existed still match; another value does change them."""
    cfg = Config()
    # config_fingerprint(Config()) at 43f4a33, before model.type_targets / type_pairs existed
    assert config_fingerprint(cfg) == "2de9e29824363e7daa4768f57033b4ff4594998963ebd9b1d36c976894f63504"
    for section, settings in ADDED_LATER.items():
        for key in settings:
            assert getattr(getattr(cfg, section), key) == settings[key], f"{section}.{key}: default changed"
    for change in ("model.type_targets=relation", "model.type_pairs=64", "model.aggr=mean"):
        assert config_fingerprint(cfg.with_overrides([change])) != config_fingerprint(cfg), change


def _row(**kw):
    return {"model": "ag", "run": "bench", "seed": 0, "data_fingerprint": "d", "config_fingerprint": "c",
            "f1": 0.4, "mbr": {"f1": 0.41, "mbr_temperature": 1.0}, **kw}


def test_data_fingerprint_is_computed_on_first_use(tmp_path):
    """Loading results reads no prepared data; the fingerprint is read when a row needs it."""
    a = tmp_path / "a.json"
    a.write_text(json.dumps([_row()]))
    reuse = Reuse([str(a)], str(tmp_path / "not-prepared-yet"), None)
    assert list(reuse.rows) == [("ag", "bench")]
    with pytest.raises(FileNotFoundError, match="has no train split"):
        reuse.data_fp


def test_load_results_later_files_win_and_bad_files_are_named(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps([_row(), _row(model="ncf", mbr=None)]))
    b.write_text(json.dumps([_row(f1=0.5)]))
    rows = load_results([str(a), str(b)])
    assert rows[("ag", "bench")]["f1"] == 0.5 and rows[("ag", "bench")]["reused_from"] == str(b)
    assert rows[("ncf", "bench")]["reused_from"] == str(a)
    # a row reused before keeps the file it first came from
    c = tmp_path / "c.json"
    c.write_text(json.dumps([_row(reused_from="first.json")]))
    assert load_results([str(c)])[("ag", "bench")]["reused_from"] == "first.json"
    with pytest.raises(FileNotFoundError, match="nope.json does not exist"):
        load_results([str(tmp_path / "nope.json")])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([_row(), {"model": "wg", "run": "bench", "seed": 1, "f1": 0.3}]))
    with pytest.raises(ValueError, match=r"bad.json, row 1: no data_fingerprint, config_fingerprint"):
        load_results([str(bad)])
    bad.write_text(json.dumps({"model": "wg"}))
    with pytest.raises(ValueError, match="expected a list of rows"):
        load_results([str(bad)])


def test_match_names_the_difference():
    assert match(_row(), "d", "c", 1.0) is None and match(_row(), "d", "c", None) is None
    assert match(None, "d", "c", None) == "no row"
    assert match(_row(), "x", "c", None) == "measured on other data"
    assert match(_row(), "d", "x", None) == "trained with another configuration"
    assert match(_row(), "d", "c", 0.5) == "has no expected-F1 pick at T = 0.5"
    assert match(_row(mbr=None), "d", "c", 1.0) == "has no expected-F1 pick at T = 1"
    assert match(_row(model="ncf", mbr=None), "d", "c", 1.0) is None  # NCF picks nothing


@pytest.mark.slow
def test_data_fingerprint_follows_the_splits(tiny_prepared, tmp_path):
    import shutil

    prepared = tiny_prepared["dir"]
    fp = data_fingerprint(str(prepared))
    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    assert data_fingerprint(str(copy)) == fp  # where the data lie does not matter
    # one test record moved to validation: another split, another fingerprint
    import pyarrow.parquet as pq

    test_dir, val_dir = copy / "records" / "split=test", copy / "records" / "split=val"
    first = sorted(test_dir.glob("*.parquet"))[0]
    t = pq.read_table(first)
    pq.write_table(t.slice(1), first)
    pq.write_table(t.slice(0, 1), val_dir / "moved.parquet")
    assert data_fingerprint(str(copy)) != fp


@pytest.mark.slow
def test_report_rebuilt_from_results_without_training(experiment, pipeline_run, tmp_path, caplog):
    """The tiny experiment's Table 6 again, in a new output directory with no runs: every row is
    reused, nothing trains, and the table is the same."""
    results = experiment["report"] / "results.json"
    rows = json.loads(results.read_text())
    assert all(len(r["data_fingerprint"]) == 64 and len(r["config_fingerprint"]) == 64 and r["trained_at"]
               for r in rows)
    opts = ExperimentOptions(seeds=(0,), layers=(1, 2), mbr=1.0, reuse_results=(str(results),))
    out = tmp_path / "again"
    res = run_experiments(pipeline_run["cfg"], str(out), "table6", opts, emr=pipeline_run["emr"],
                          ddi=pipeline_run["ddi"])
    assert res["trained"] == [] and sorted(res["reused"]) == sorted(f"tiny{t}-{m}" for m in ("wg", "ag")
                                                                    for t in ("", "-l2"))
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())
    assert (out / "report" / "table6.md").read_text() == (experiment["report"] / "table6.md").read_text()
    assert "4 of the runs were not trained here" in (out / "report" / "report.md").read_text()
    again = json.loads((out / "report" / "results.json").read_text())
    assert {r["reused_from"] for r in again} == {str(results)}

    # a row trained with another configuration is not reused, and the log says why
    cfg = pipeline_run["cfg"].with_overrides([f"data.prepared={out / 'prepared'}"])
    reuse = Reuse([str(results)], cfg.data.prepared, 1.0)
    run_cfg = cfg.with_overrides(["train.name=tiny-l2", "model.gnn_layers=2"])
    assert reuse.get("wg", run_cfg) is not None
    with caplog.at_level(logging.WARNING, logger="dpr_dist.eval.experiment_store"):
        assert reuse.get("wg", run_cfg.with_overrides(["train.epochs=99"])) is None
    assert reuse.rejected == {"tiny-l2-wg": "trained with another configuration"}
    assert "not reusing tiny-l2-wg" in caplog.text and "another configuration" in caplog.text

    # a section that looks into a model uses the row's model directory where it still exists
    # (shared storage), and says what is missing where it does not
    gone = tmp_path / "gone.json"
    gone.write_text(json.dumps([{**r, "model_dir": str(tmp_path / "deleted" / r["run"])} for r in rows]))
    with pytest.raises(FileNotFoundError, match=r"run tiny-ag was reused from .*gone.json, but this section needs "
                                                r"its model directory"):
        run_experiments(pipeline_run["cfg"], str(tmp_path / "third"), "fig8",
                        replace(opts, reuse_results=(str(gone),)), emr=pipeline_run["emr"], ddi=pipeline_run["ddi"])
    fig8 = run_experiments(pipeline_run["cfg"], str(out), "fig8", opts, emr=pipeline_run["emr"],
                           ddi=pipeline_run["ddi"])
    assert fig8["trained"] == [] and (out / "report" / "fig8.png").is_file()
    # the Table 6 rows of the first call stay in results.json beside the one fig8 evaluated
    after = {(r["run"], r["model"]) for r in json.loads((out / "report" / "results.json").read_text())}
    assert after == {(r["run"], r["model"]) for r in again} and len(fig8["results"]) == 1
