"""TensorBoard and MLflow logging of Ray Train runs (``dpr_dist.train.tracking``): the loggers
on their own here; on real 2-worker runs with a worker fault in ``test_run.py``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dpr_dist.config import load_config
from dpr_dist.train.tracking import MLflowLogger, TensorBoardLogger, flat_params, scalars, tracking_callbacks
from tracking_files import mlflow_runs, tensorboard_scalars  # tests/tracking_files.py

REPO = Path(__file__).resolve().parents[2]


REPORTS = [{"epoch": 0, "loss": 2.5, "val_f1": 0.30, "converged": False, "note": "x", "nan": float("nan")},
           {"epoch": 1, "loss": 2.0, "val_f1": 0.35, "converged": True, "note": "y", "nan": float("nan")}]


def test_scalars_keep_finite_numbers_only():
    assert scalars(REPORTS[0]) == {"epoch": 0.0, "loss": 2.5, "val_f1": 0.30}


def test_tensorboard_logger_writes_one_scalar_per_metric_and_epoch(tmp_path):
    cb = TensorBoardLogger(str(tmp_path), "tiny-ag")
    for r in REPORTS:
        cb.after_report(None, [r, {**r, "loss": 99.0}], None)  # rank 1's numbers are not logged
    got = tensorboard_scalars(tmp_path / "tiny-ag")
    assert set(got) == {"loss", "val_f1"}
    assert got["loss"] == [(0, 2.5), (1, 2.0)]
    assert [(s, round(v, 6)) for s, v in got["val_f1"]] == [(0, 0.3), (1, 0.35)]


def test_mlflow_logger_logs_params_metrics_and_finishes(tmp_path, monkeypatch):
    from dpr_dist.train import tracking

    monkeypatch.setattr(tracking, "MLFLOW_BATCH", 10)  # the parameters in several log_batch calls
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cb = MLflowLogger(uri, "dpr-dist", "tiny-ag", flat_params(cfg), epochs=2)
    cb.after_report(None, [REPORTS[0]], None)
    assert mlflow_runs(uri)["tiny-ag"]["status"] == "RUNNING"
    cb.after_report(None, [REPORTS[1]], None)
    run = mlflow_runs(uri)["tiny-ag"]
    assert run["status"] == "FINISHED" and run["tags"]["ray_train_run"] == "tiny-ag"
    assert run["metrics"]["loss"] == [(0, 2.5), (1, 2.0)] and set(run["metrics"]) == {"loss", "val_f1"}
    assert run["params"]["train.lr"] == str(cfg.train.lr) and run["params"]["model.name"] == cfg.model.name
    assert len(run["params"]) == len(flat_params(cfg)) > 10


def test_tracking_callbacks_follow_the_config(tmp_path, monkeypatch):
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    assert tracking_callbacks(cfg, "tiny-ag", 3) == []
    cfg = replace(cfg, train=replace(cfg.train, tensorboard_dir=str(tmp_path), mlflow_uri="sqlite:///x.db"))
    tb, ml = tracking_callbacks(cfg, "tiny-ag", 3)
    assert isinstance(tb, TensorBoardLogger) and tb.path == str(tmp_path / "tiny-ag")
    assert isinstance(ml, MLflowLogger) and (ml.run, ml.epochs, ml.experiment) == ("tiny-ag", 3, "dpr-dist")
    # relative paths are resolved on the driver (the loggers run in the controller, elsewhere)
    monkeypatch.chdir(tmp_path)
    cfg = replace(cfg, train=replace(cfg.train, tensorboard_dir="tb", mlflow_uri="sqlite:///runs/mlflow.db"))
    tb, ml = tracking_callbacks(cfg, "tiny-ag", 3)
    assert tb.path == str(tmp_path / "tb" / "tiny-ag") and ml.uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    cfg = replace(cfg, train=replace(cfg.train, mlflow_uri="http://mlflow:5000"))
    assert tracking_callbacks(cfg, "tiny-ag", 3)[1].uri == "http://mlflow:5000"
    with pytest.raises(ValueError, match="tensorboard_dir='s3://b/tb' must be a local or shared path"):
        load_config(REPO / "configs" / "tiny.yaml", ["train.tensorboard_dir=s3://b/tb"])


def test_mlflow_logger_finishes_a_run_that_stops_early(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cb = MLflowLogger(uri, "dpr-dist", "tiny-ag", {}, epochs=10, patience=1)
    cb.after_report(None, [{"epoch": 0, "loss": 2.5, "val_f1": 0.4, "best_epoch": 0}], None)
    assert mlflow_runs(uri)["tiny-ag"]["status"] == "RUNNING"
    cb.after_report(None, [{"epoch": 1, "loss": 2.4, "val_f1": 0.3, "best_epoch": 0}], None)  # the workers stop
    assert mlflow_runs(uri)["tiny-ag"]["status"] == "FINISHED"
