"""Sweeps: the search space, trial configurations, concurrency, the report, and one small
sweep on the session's 2-CPU Ray cluster (4 trials of 2 epochs, 1 worker each, one trial at
a time, ASHA with grace period 1 and reduction factor 2) that is then resumed under its name.

Trials run one after another, so ASHA's decisions depend only on the reported results, in
trial order: the test replays those results through the sweep's own scheduler and checks
that every trial ran exactly as long as ASHA decided. Everything is seeded (Optuna's TPE,
training) and the sweep reads a copy of the prepared data in record order, so it reports
the same results, and ASHA stops the same trial (the fourth), on every run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dpr_dist.config import load_config
from dpr_dist.train.run import pretrain
from dpr_dist.tune import max_concurrent_trials, run_sweep, search_space, sweep_dir, trial_config
from dpr_dist.tune.report import best_row, build_study, defaults_trial, importances, to_markdown
from dpr_dist.tune.space import EPOCHS_KEY, METRIC, asha_scheduler, default_point
from dpr_dist.tune.sweep import _ncf_checkpoint

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- fast
def test_search_space_follows_the_config():
    cfg = load_config(None, ["tune.dim=[8, 64]", "tune.gnn_layers=[1, 2]"])
    space = search_space(cfg, "ag")
    assert list(space) == ["data/threshold", "train/negative_ratio", "model/gnn_layers", "model/edge_dim",
                           "train/lr", "train/l2"]
    assert space["data/threshold"] == optuna.distributions.FloatDistribution(0.01, 0.1, log=True)
    assert space["model/edge_dim"] == optuna.distributions.IntDistribution(8, 64, log=True)
    assert space["model/gnn_layers"] == optuna.distributions.IntDistribution(1, 2)
    assert "model/edge_dim" not in search_space(cfg, "wg")  # no edge attributes to size
    ranked = load_config(None, ["tune.rank_weight=[0, 2]", "train.rank_weight=1.0"])
    assert search_space(ranked, "ag")["train/rank_weight"] == optuna.distributions.FloatDistribution(0.0, 2.0)
    assert default_point(ranked, search_space(ranked, "ag"))["train/rank_weight"] == 1.0
    assert trial_config(ranked, {"train/rank_weight": 0.25}).train.rank_weight == 0.25
    mixed = load_config(None, ["tune.rank_consensus=[0, 0.75]", "train.rank_consensus=0.5"])
    assert "train/rank_consensus" not in space  # (0, 0): not searched
    assert search_space(mixed, "wg")["train/rank_consensus"] == optuna.distributions.FloatDistribution(0.0, 0.75)
    assert default_point(mixed, search_space(mixed, "wg"))["train/rank_consensus"] == 0.5
    assert trial_config(mixed, {"train/rank_consensus": 0.25}).train.rank_consensus == 0.25


@pytest.mark.parametrize("override", ["tune.lr=[0.01, 0.001]", "tune.l2=[0.0, 0.001]", "tune.gnn_layers=[0, 2]",
                                      "tune.rank_weight=[-1, 1]", "tune.rank_weight=[2, 1]",
                                      "tune.rank_consensus=[-0.5, 0.5]", "tune.rank_consensus=[0, 1.5]"])
def test_search_space_rejects_bad_ranges(override):
    key = override.split("=")[0]
    with pytest.raises(ValueError, match=key):
        search_space(load_config(None, [override]))


def test_search_space_keeps_hard_negatives_within_every_negative_ratio():
    search_space(load_config(None, ["train.hard_negatives=2", "tune.negative_ratio=[2, 20]"]))
    with pytest.raises(ValueError, match=r"train.hard_negatives=3 exceeds .*tune.negative_ratio=\[2, 20\]"):
        search_space(load_config(None, ["train.hard_negatives=3", "tune.negative_ratio=[2, 20]"]))


def test_trial_config_applies_typed_parameters():
    cfg = load_config(None)
    out = trial_config(cfg, {"data": {"threshold": 0.05}, "model": {"gnn_layers": 2.0},
                             "train/lr": 0.002, "model.edge_dim": 48})
    assert (out.data.threshold, out.model.gnn_layers, out.train.lr, out.model.edge_dim) == (0.05, 2, 0.002, 48)
    assert isinstance(out.model.gnn_layers, int)
    assert out.model.drug_dim == cfg.model.drug_dim and out.train.epochs == cfg.train.epochs
    with pytest.raises(ValueError, match="nope"):
        trial_config(cfg, {"model/nope": 1})


def test_default_point_is_the_configs_own_values():
    cfg = load_config(None, ["data.threshold=0.02", "train.negative_ratio=7", "model.edge_dim=48"])
    point = default_point(cfg, search_space(cfg, "ag"))
    assert point == {"data/threshold": 0.02, "train/negative_ratio": 7, "model/gnn_layers": cfg.model.gnn_layers,
                     "model/edge_dim": 48, "train/lr": cfg.train.lr, "train/l2": cfg.train.l2}
    assert default_point(load_config(None, ["train.lr=0.5"]), search_space(cfg, "ag")) is None  # outside [1e-4, 1e-2]
    table, _ = _table([{"trial_id": "a", "best_val_f1": 0.3, "train.lr": 0.004},
                       {"trial_id": "b", "best_val_f1": 0.2}, {"trial_id": "c", "best_val_f1": 0.1}])
    base = {"data/threshold": 0.02, "train/negative_ratio": 4, "model/gnn_layers": 1, "train/lr": 1e-3,
            "train/l2": 1e-6}
    assert defaults_trial(table, base)["trial_id"] == "b"  # the first trial that ran exactly these values
    assert defaults_trial(table, {**base, "train/lr": 0.002}) is None and defaults_trial(table, None) is None


def test_concurrency_follows_the_cluster():
    cfg = load_config(None, ["train.num_workers=2", "train.cpus_per_worker=2", "tune.max_concurrent=8"])
    assert max_concurrent_trials(cfg, {"CPU": 16.0}) == 4
    assert max_concurrent_trials(cfg, {"CPU": 7.0}) == 1
    assert max_concurrent_trials(cfg, {"CPU": 2.0}) == 1  # too small now: 1 (an autoscaler may grow it)
    gpu = replace(cfg, train=replace(cfg.train, use_gpu=True))
    assert max_concurrent_trials(gpu, {"CPU": 64.0, "GPU": 4.0}) == 2
    assert max_concurrent_trials(replace(cfg, tune=replace(cfg.tune, max_concurrent=3)), {"CPU": 64.0}) == 3


def test_sweep_refuses_bad_input_before_starting(tmp_path):
    cfg = load_config(None, [f"data.prepared={tmp_path / 'none'}", f"train.storage_path={tmp_path}"])
    with pytest.raises(ValueError, match="'ncf' is not a DPR variant"):
        run_sweep(cfg, model="ncf")
    with pytest.raises(FileNotFoundError, match="no prepared data"):
        run_sweep(cfg)
    assert not (tmp_path / "sweep").exists()  # nothing written, no Ray started for it


def test_cli_tune_passes_model_and_paths(tmp_path, capsys):
    from dpr_dist.cli import main

    args = ["tune", "--prepared", str(tmp_path / "none"), "--storage-path", str(tmp_path), "--set", "tune.name=c"]
    assert main([*args, "--model", "ncf"]) == 2
    assert "'ncf' is not a DPR variant" in capsys.readouterr().err
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no prepared data" in err and str(tmp_path / "none") in err
    assert not (tmp_path / "c").exists()


def _checkpoint(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.pt").write_bytes(b"weights")
    return path


def test_a_given_pre_training_is_recorded_and_kept_on_resume(tmp_path):
    cfg = load_config(None, [f"train.storage_path={tmp_path}", "tune.name=s1"])
    root = sweep_dir(cfg)
    run = tmp_path / "other-ncf"  # a pre-training run directory: pretrained.json names its best checkpoint
    ckpt = _checkpoint(run / "checkpoint_0001")
    run.joinpath("pretrained.json").write_text(json.dumps({"checkpoint": str(ckpt), "epochs": 16, "best_epoch": 15,
                                                           "best_val_f1": 0.46, "history": []}))
    assert _ncf_checkpoint(cfg, root, str(run)) == str(ckpt)
    record = json.loads((tmp_path / "s1" / "pretrain-ncf" / "pretrained.json").read_text())
    assert record["source"] == str(run) and record["checkpoint"] == str(ckpt) and record["epochs"] == 16
    assert _ncf_checkpoint(cfg, root, None) == str(ckpt)  # resumed without --pretrained: the same NCF
    assert _ncf_checkpoint(cfg, root, str(ckpt)) == str(ckpt)  # or naming its checkpoint directly
    other = _checkpoint(tmp_path / "another")
    with pytest.raises(ValueError, match=f"runs from the NCF checkpoint {ckpt}, not {other}"):
        _ncf_checkpoint(cfg, root, str(other))
    with pytest.raises(FileNotFoundError, match="neither a pre-training run directory"):
        _ncf_checkpoint(cfg, sweep_dir(replace(cfg, tune=replace(cfg.tune, name="s2"))), str(tmp_path / "none"))


def test_sweep_dir_defaults_to_the_training_storage(tmp_path):
    cfg = load_config(None, [f"train.storage_path={tmp_path}", "tune.name=s1"])
    assert sweep_dir(cfg) == f"{tmp_path}/s1"
    assert sweep_dir(replace(cfg, tune=replace(cfg.tune, storage_path="s3://b/p"))) == "s3://b/p/s1"


def _table(rows):
    space = search_space(load_config(None, ["tune.dim=[16, 256]"]), "wg")
    base = {"data.threshold": 0.02, "train.negative_ratio": 4, "model.gnn_layers": 1, "train.lr": 1e-3,
            "train.l2": 1e-6, "best_epoch": 0, "epochs": 3, "wall_s": 1.0, "checkpoint": "x", "status": "completed"}
    return pa.Table.from_pylist([{"trial_id": r["trial_id"], **base, **r} for r in rows]), space


def test_report_study_and_markdown():
    table, space = _table([
        {"trial_id": "a", "best_val_f1": 0.2, "train.lr": 1e-4, "status": "stopped", "epochs": 1},
        {"trial_id": "b", "best_val_f1": 0.5, "train.lr": 5e-3, "data.threshold": 0.08},
        {"trial_id": "c", "best_val_f1": 0.5, "train.lr": 2e-3, "train.negative_ratio": 9},
        {"trial_id": "d", "best_val_f1": None, "status": "error", "epochs": 0},
    ])
    assert best_row(table)["trial_id"] == "b"  # ties go to the earlier trial
    study = build_study(table, space)
    assert [t.value for t in study.trials] == [0.2, 0.5, 0.5]  # the errored trial has no value
    assert study.trials[1].params["data.threshold"] == 0.08
    imp = importances(study, seed=0)
    assert set(imp) == {"data.threshold", "train.negative_ratio", "model.gnn_layers", "train.lr", "train.l2"}
    assert sum(imp.values()) == pytest.approx(1.0)
    assert imp == importances(build_study(table, space), seed=0)  # seeded
    md = to_markdown(table).splitlines()
    assert md[0].startswith("| trial_id | data.threshold |") and "checkpoint" not in md[0]
    assert [line.split("|")[1].strip() for line in md[2:]] == ["b", "c", "a", "d"]
    with pytest.raises(RuntimeError, match="no trial"):
        best_row(table.filter(pc.is_null(table["best_val_f1"])))


# ----------------------------------------------------------------------------- a real sweep
def _in_record_order(src: Path, dst: Path) -> Path:
    """A copy of prepared data whose record files hold their rows in ``record_id`` order.

    ``prepare`` writes a split's blocks in the order its tasks finish, so two preparations
    of the same records can order them differently, and training (batches, shards) follows
    the file order. In record order the sweep sees the same data in every test session.
    """
    shutil.copytree(src, dst)
    for split in (dst / "records").glob("split=*"):
        files = sorted(split.glob("*.parquet"))
        table = pa.concat_tables([pq.ParquetFile(f).read() for f in files]).sort_by("record_id")
        for f in files:
            f.unlink()
        pq.write_table(table, split / "part-0.parquet", row_group_size=128)
    return dst


@pytest.fixture(scope="module")
def sweep(tiny_prepared, tmp_path_factory):
    """The sweep also searches the ranking term's weight, and starts from a pre-training run
    made before it (``--pretrained``), as one reuses the NCF of a pipeline run."""
    root = tmp_path_factory.mktemp("tune")
    prepared = _in_record_order(Path(tiny_prepared["dir"]), root / "prepared")
    cfg = load_config(REPO / "configs" / "tiny.yaml", [
        f"data.prepared={prepared}", f"train.storage_path={root / 'ray'}", "train.num_workers=1",
        "train.epochs=2", "train.pretrain_epochs=1", "tune.num_samples=4", "tune.max_concurrent=1",
        "tune.grace_period=1", "tune.reduction_factor=2", "tune.name=tiny-sweep", "tune.dim=[8, 64]",
        "tune.rank_weight=[0, 1]", f"train.tensorboard_dir={root / 'tb'}",
        f"train.mlflow_uri=sqlite:///{root / 'mlflow.db'}"])
    pretrain(replace(cfg, train=replace(cfg.train, name="given")))
    given = root / "ray" / "given-ncf"
    summary = run_sweep(cfg, pretrained=str(given))
    return {"cfg": cfg, "summary": summary, "dir": Path(summary["sweep_dir"]), "given": given,
            "table": pq.read_table(summary["results"])}


def _epoch_dirs(runs: Path) -> list[str]:
    return sorted(str(p.relative_to(runs)) for p in runs.glob("*/epoch_*"))


def _trial_results(sweep_root: Path, trial_id: str) -> list[dict]:
    """The results a trial reported to Tune, in order (its ``result.json``)."""
    lines = (sweep_root / f"trial_{trial_id}" / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _asha_epochs(cfg, trials: list[list[dict]]) -> list[int]:
    """Epochs each trial runs when ASHA sees ``trials``' results one trial after another
    (the sweep's own scheduler, fed by hand): a trial ends at its first STOP."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    scheduler = asha_scheduler(cfg)
    scheduler.set_search_properties(METRIC, "max")
    epochs = []
    for i, results in enumerate(trials):
        trial = Trial("run_trial", trial_id=f"t{i}", stub=True)
        scheduler.on_trial_add(None, trial)
        for r in results:
            if scheduler.on_trial_result(None, trial, r) == TrialScheduler.STOP:
                break
        epochs.append(r[EPOCHS_KEY])
        scheduler.on_trial_complete(None, trial, r)
    return epochs


def test_asha_stops_a_trial_below_the_rung_median():
    cfg = load_config(None, ["train.epochs=2", "tune.grace_period=1", "tune.reduction_factor=2"])

    def trial(*f1):  # best validation F1 after each epoch
        return [{EPOCHS_KEY: e + 1, METRIC: v} for e, v in enumerate(f1)]

    # rung at epoch 1: the second trial falls below the first; the third ties the median and goes on
    assert _asha_epochs(cfg, [trial(0.5, 0.6), trial(0.4, 0.9), trial(0.45, 0.5)]) == [2, 1, 2]


@pytest.mark.slow
def test_every_trial_logs_its_epochs_to_tensorboard(sweep):
    from tracking_files import tensorboard_scalars

    tb = sweep["cfg"].train.tensorboard_dir
    for r in sweep["table"].to_pylist():  # the trial's Train run, <trial id>-ag, is its own TensorBoard run
        logged = tensorboard_scalars(Path(tb) / f"{r['trial_id']}-ag")
        results = _trial_results(sweep["dir"], r["trial_id"])
        assert [s for s, _ in logged["val_f1"]] == list(range(r["epochs"]))
        assert [v for _, v in logged["val_f1"]] == pytest.approx([x["val_f1"] for x in results], rel=1e-6)
    assert (Path(tb) / "given-ncf").is_dir()  # the pre-training made before the sweep


@pytest.mark.slow
def test_every_trial_is_one_mlflow_run_that_ends_with_it(sweep):
    from tracking_files import mlflow_runs

    runs = mlflow_runs(sweep["cfg"].train.mlflow_uri)
    table = sweep["table"].to_pylist()
    # Tune's MLflowLoggerCallback: one run per trial; the pre-training before the sweep is a Train run of its own
    assert sorted(runs) == sorted(["given-ncf", *(f"run_trial_{r['trial_id']}" for r in table)])
    for r in table:
        run = runs[f"run_trial_{r['trial_id']}"]
        assert run["status"] == "FINISHED"  # also the trials ASHA stopped
        assert float(run["params"]["model/edge_dim"]) == r["model.edge_dim"]  # the trial's hyperparameters
        assert float(run["params"]["train/rank_weight"]) == pytest.approx(r["train.rank_weight"])
        assert len(run["metrics"]["val_f1"]) == r["epochs"]
        assert run["metrics"]["best_val_f1"][-1][1] == pytest.approx(r["best_val_f1"])


@pytest.mark.slow
def test_every_trial_reports_and_asha_stops_some(sweep):
    cfg, table = sweep["cfg"], sweep["table"].to_pylist()
    epochs_max = cfg.train.epochs
    assert len(table) == 4 and len({r["trial_id"] for r in table}) == 4
    reported = [_trial_results(sweep["dir"], r["trial_id"]) for r in table]  # rows in trial order
    for r, results in zip(table, reported, strict=True):
        assert [x[EPOCHS_KEY] for x in results] == list(range(1, r["epochs"] + 1))  # every epoch reported
        assert 0.0 <= r["best_val_f1"] <= 1.0 and 1 <= r["epochs"] <= epochs_max and r["wall_s"] > 0
        assert r["best_val_f1"] == max(x["val_f1"] for x in results) == results[-1][METRIC]
        assert cfg.tune.threshold[0] <= r["data.threshold"] <= cfg.tune.threshold[1]
        assert cfg.tune.gnn_layers[0] <= r["model.gnn_layers"] <= cfg.tune.gnn_layers[1]
        assert cfg.tune.dim[0] <= r["model.edge_dim"] <= cfg.tune.dim[1]
        # the ranking term trained exactly in the trials that drew a weight above 0
        assert cfg.tune.rank_weight[0] <= r["train.rank_weight"] <= cfg.tune.rank_weight[1]
        assert all((x["rank_loss"] > 0) == (r["train.rank_weight"] > 0) for x in results)
        assert r["status"] == ("completed" if r["epochs"] == epochs_max else "stopped")
        assert f"epoch_{r['best_epoch']:04d}" in r["checkpoint"]
    # the trials ran one at a time (max_concurrent=1): ASHA decided on exactly these results in this order
    starts = [min(x["timestamp"] for x in res) for res in reported]
    ends = [max(x["timestamp"] for x in res) for res in reported]
    assert all(ends[i] <= starts[i + 1] for i in range(len(table) - 1))
    # every trial ran as long as ASHA let it, and ASHA stopped at least one early (seeded, so always
    # the same one): its best F1 after one epoch was below the median of the trials before it
    epochs = [r["epochs"] for r in table]
    assert epochs == _asha_epochs(cfg, reported)
    assert epochs[0] == epochs_max  # the first trial has no rival at the rung
    assert min(epochs) < epochs_max
    assert sweep["summary"]["stopped_early"] == sum(e < epochs_max for e in epochs) >= 1
    assert sweep["summary"]["complete"] and sweep["summary"]["interrupted"] == [] and sweep["summary"]["planned"] == 4
    # each trial is one Train run with one checkpoint per epoch it ran (at most 2 best + latest kept)
    runs = sweep["dir"] / "runs"
    assert sorted(p.name for p in runs.iterdir()) == sorted(f"{r['trial_id']}-ag" for r in table)
    # one shared pre-training: the given one, recorded for a resume, none run by the sweep
    record = json.loads((sweep["dir"] / "pretrain-ncf" / "pretrained.json").read_text())
    given = json.loads((sweep["given"] / "pretrained.json").read_text())
    assert record == {**given, "source": str(sweep["given"])}
    assert sorted(p.name for p in (sweep["dir"] / "pretrain-ncf").iterdir()) == ["pretrained.json"]


@pytest.mark.slow
def test_the_first_trial_runs_the_configs_own_values(sweep):
    cfg, table, s = sweep["cfg"], sweep["table"].to_pylist(), sweep["summary"]
    first = table[0]
    assert [r["defaults"] for r in table] == [True, False, False, False]
    assert (first["data.threshold"], first["train.negative_ratio"], first["model.gnn_layers"],
            first["model.edge_dim"], first["train.rank_weight"]) == (
        cfg.data.threshold, cfg.train.negative_ratio, cfg.model.gnn_layers, cfg.model.edge_dim, cfg.train.rank_weight)
    assert first["train.lr"] == pytest.approx(cfg.train.lr) and first["train.l2"] == pytest.approx(cfg.train.l2)
    d = s["defaults"]
    assert d["trial_id"] == first["trial_id"] and d["best_val_f1"] == first["best_val_f1"]
    expected_dir = sweep["dir"] / ("best" if first["trial_id"] == s["best_trial"] else "defaults")
    assert d["model_dir"] == str(expected_dir)
    stored = json.loads((expected_dir / "metrics.json").read_text())
    assert stored["sweep"]["trial_id"] == first["trial_id"] and stored["test"]["f1"] == pytest.approx(d["test"]["f1"])


@pytest.mark.slow
def test_report_files(sweep):
    d, table = sweep["dir"], sweep["table"]
    md = (d / "results.md").read_text()
    assert all(t in md for t in table["trial_id"].to_pylist())
    assert (d / "history.png").read_bytes().startswith(PNG)
    assert (d / "importance.png").read_bytes().startswith(PNG)
    imp = json.loads((d / "importance.json").read_text())
    assert set(imp) == {"data.threshold", "train.negative_ratio", "model.gnn_layers", "model.edge_dim",
                        "train.lr", "train.l2", "train.rank_weight"}


@pytest.mark.slow
def test_best_model_directory_loads_and_evaluates(sweep):
    from dpr_dist.eval.evaluate import evaluate
    from dpr_dist.train.modeldir import load_model_dir
    from dpr_dist.train.prepared import read_records

    s, table = sweep["summary"], sweep["table"].to_pylist()
    best = max(table, key=lambda r: r["best_val_f1"])
    assert s["best_trial"] == best["trial_id"] and s["model_dir"] == str(sweep["dir"] / "best")
    bundle = load_model_dir(s["model_dir"])
    assert bundle.model_name == "ag"
    assert bundle.threshold == pytest.approx(best["data.threshold"])
    assert (bundle.cfg.model.gnn_layers, bundle.cfg.model.edge_dim) == (best["model.gnn_layers"],
                                                                        best["model.edge_dim"])
    assert bundle.cfg.train.lr == pytest.approx(best["train.lr"])
    assert bundle.metrics["best_val_f1"] == pytest.approx(best["best_val_f1"])
    assert bundle.metrics["sweep"]["trial_id"] == best["trial_id"]
    test = read_records(str(sweep["cfg"].data.prepared), "test")
    metrics, _ = evaluate(bundle, test)
    assert metrics["n"] == test.num_rows and 0.0 <= metrics["f1"] <= 1.0
    assert metrics["f1"] == pytest.approx(s["test"]["f1"]) == pytest.approx(bundle.metrics["test"]["f1"])


@pytest.mark.slow
def test_rerun_resumes_without_new_trials(sweep):
    d = sweep["dir"]
    before = _epoch_dirs(d / "runs"), sorted(p.name for p in (d / "runs").iterdir())
    again = run_sweep(sweep["cfg"])
    assert again["resumed"] and not sweep["summary"]["resumed"]
    assert (_epoch_dirs(d / "runs"), sorted(p.name for p in (d / "runs").iterdir())) == before
    assert pq.read_table(again["results"]).equals(sweep["table"])
    assert {k: again[k] for k in ("best_trial", "best_params", "best_val_f1", "test", "defaults")} == \
        {k: sweep["summary"][k] for k in ("best_trial", "best_params", "best_val_f1", "test", "defaults")}


@pytest.mark.slow
def test_a_resumed_trials_row_comes_from_its_train_run(sweep):
    """Tune starts a resumed trial's results afresh (its ``result.json`` then holds only the
    epochs after the resume), so the table takes F1, epochs, time and the best checkpoint
    from the trial's Train run, which keeps them across resumes."""
    import pandas as pd
    from ray.tune import Result

    from dpr_dist.tune.report import results_table

    cfg, d, table = sweep["cfg"], sweep["dir"], sweep["table"].to_pylist()

    def resumed(trial_id, keep):  # the Tune results of a trial resumed before its last `keep` epochs
        rows = _trial_results(d, trial_id)
        return Result(metrics=rows[-1], checkpoint=None, error=None, path=str(d / f"trial_{trial_id}"),
                      metrics_dataframe=pd.DataFrame(rows[len(rows) - keep:]))

    space, keys = search_space(cfg, "ag"), ("best_val_f1", "best_epoch", "epochs", "wall_s", "checkpoint", "status")
    for keep in (1, 0):  # resumed at the last epoch; resumed and stopped again before it reported
        grid = [resumed(r["trial_id"], keep) for r in table]
        rows = results_table(grid, space, cfg.train.epochs, metric=METRIC, epochs_key=EPOCHS_KEY,
                             train_runs=lambda t: str(d / "runs" / f"{t}-ag")).to_pylist()
        assert [{k: r[k] for k in keys} for r in rows] == [{k: r[k] for k in keys} for r in table]
    # without the Train runs, an empty result reads as a trial that never reported
    assert results_table(grid, space, cfg.train.epochs, metric=METRIC, epochs_key=EPOCHS_KEY)["best_val_f1"] \
        .to_pylist() == [None] * len(table)
    for r in table:  # wall_s: the trial's epochs (training and validation), from the Train history
        state = json.loads((d / "runs" / f"{r['trial_id']}-ag" / f"epoch_{r['epochs'] - 1:04d}" / "state.json")
                           .read_text())
        assert len(state["history"]) == r["epochs"]
        assert r["wall_s"] == pytest.approx(sum(h["epoch_s"] for h in state["history"])) and r["wall_s"] > 0


@pytest.mark.slow
def test_a_sweep_on_s3_reports_exports_and_resumes(sweep, s3_server):
    """The whole sweep on the loopback S3 endpoint: Tune's experiment, the trials' Train
    runs, the report and ``best/``; run again, it resumes from there. (It starts from the
    local pre-training that the module's sweep was given.)"""
    from dpr_dist.data import io
    from dpr_dist.train.modeldir import load_model_dir

    cfg = load_config(REPO / "configs" / "tiny.yaml", [
        f"data.prepared={sweep['cfg'].data.prepared}", "train.storage_path=s3://dpr/tune-s3", "train.num_workers=1",
        "train.epochs=1", "train.pretrain_epochs=1", "tune.num_samples=2", "tune.max_concurrent=1",
        "tune.grace_period=1", "tune.name=s3-sweep"])
    first = run_sweep(cfg, pretrained=str(sweep["given"]))
    root = "s3://dpr/tune-s3/s3-sweep"
    assert first["sweep_dir"] == root and first["complete"] and not first["resumed"] and first["trials"] == 2
    table = io.read_table(first["results"])
    assert first["results"].startswith(root) and table.num_rows == 2
    assert table["best_val_f1"].null_count == 0 and all(t > 0 for t in table["wall_s"].to_pylist())
    for row in table.to_pylist():  # each trial's best checkpoint, from its Train run on S3
        assert row["checkpoint"].startswith("dpr/tune-s3/s3-sweep/runs/") and row["checkpoint"].endswith(
            f"epoch_{row['best_epoch']:04d}")
    for name in ("results.md", "history.png", "importance.png", "pretrain-ncf/pretrained.json"):
        assert io.exists(io.join(root, name)), name
    best = load_model_dir(first["model_dir"])
    assert first["model_dir"] == f"{root}/best" and best.metrics["sweep"]["trial_id"] == first["best_trial"]
    assert best.metrics["test"]["f1"] == pytest.approx(first["test"]["f1"])
    again = run_sweep(cfg, pretrained=str(sweep["given"]))
    assert again["resumed"] and io.read_table(again["results"]).equals(table)
    assert {k: again[k] for k in ("best_trial", "best_val_f1", "test")} == {k: first[k] for k in
                                                                          ("best_trial", "best_val_f1", "test")}


@pytest.mark.slow
def test_resuming_with_another_configuration_is_refused(sweep):
    cfg = sweep["cfg"]
    changed = replace(cfg, tune=replace(cfg.tune, num_samples=8), train=replace(cfg.train, lr=0.1))
    with pytest.raises(ValueError, match=r"changed: train\.lr, tune\.num_samples"):
        run_sweep(changed)
    low = replace(cfg, tune=replace(cfg.tune, name="other", threshold=(0.001, 0.1)))
    with pytest.raises(ValueError, match=r"tune\.threshold=\[0\.001, 0\.1\] starts below the build threshold 0\.01"):
        run_sweep(low)
    assert not (sweep["dir"].parent / "other").exists()


def test_job_script_parses_its_arguments(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "jobs" / "tune.py"), "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--config" in res.stdout and "--set" in res.stdout, res.stderr


def test_results_table_marks_interrupted_trials_and_exports_follow_the_best_f1(tmp_path):
    """A sweep stopped by SIGINT: Tune keeps the running trial as RUNNING and a re-run
    resumes it, so the table must not call it stopped by ASHA, and its export is redone
    once its best F1 moves."""
    import pandas as pd
    from ray.tune import Result

    from dpr_dist.tune.report import exported_test, results_table

    space = search_space(load_config(None), "wg")

    def result(trial_id, f1s):
        n = len(f1s)
        df = pd.DataFrame({"epoch": range(n), "val_f1": f1s, METRIC: pd.Series(f1s).cummax(),
                           EPOCHS_KEY: range(1, n + 1), "time_total_s": [10.0 * (i + 1) for i in range(n)],
                           "trial_id": trial_id})
        return Result(metrics=df.iloc[-1].to_dict(), checkpoint=None, error=None, path=str(tmp_path / trial_id),
                      metrics_dataframe=df)

    grid = [result("done", [0.3, 0.4, 0.5]), result("asha", [0.2]), result("cut", [0.45, 0.46])]
    table = results_table(grid, space, 3, unfinished={"cut"}).to_pylist()
    assert [(r["trial_id"], r["status"], r["epochs"]) for r in table] == [
        ("done", "completed", 3), ("asha", "stopped", 1), ("cut", "interrupted", 2)]
    # train.patience 1 ended a trial whose second epoch did not beat its first; ASHA the other
    flat = [result("flat", [0.3, 0.3]), result("asha", [0.2, 0.25])]
    assert [r["status"] for r in results_table(flat, space, 3, patience=1).to_pylist()] == ["patience", "stopped"]
    assert [r["status"] for r in results_table(flat, space, 3).to_pylist()] == ["stopped", "stopped"]
    out = tmp_path / "best"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"sweep": {"trial_id": "cut"}, "best_val_f1": 0.46,
                                                  "test": {"f1": 0.4}}))
    assert exported_test(str(out), table[2]) == {"f1": 0.4}
    assert exported_test(str(out), {**table[2], "best_val_f1": 0.47}) is None  # improved after the resume
    assert exported_test(str(out), table[0]) is None and exported_test(str(tmp_path / "none"), table[0]) is None
