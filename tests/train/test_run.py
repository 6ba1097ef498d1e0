"""Ray Train runs on tiny synthetic data with 2 CPU workers (DDP over gloo).

One faulted run (rank 1 exits once in the middle of the last epoch, epoch 2) is the baseline
of every test here: it must resume from the last checkpoint and finish all epochs, equal a clean run
with the same seed, not train again when re-run under its name, and leave a model
directory that evaluates without the training data.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dpr_dist.config import load_config
from dpr_dist.eval.evaluate import evaluate_models
from dpr_dist.models.type_targets import relation_pairs
from dpr_dist.train.modeldir import load_model_dir
from dpr_dist.train.job import job_config, run_job
from dpr_dist.train.prepared import read_records
from dpr_dist.train.run import pretrain, train

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tiny_prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    prepared = root / "prepared"
    shutil.copytree(tiny_prepared["dir"], prepared)
    cfg = load_config(REPO / "configs" / "tiny.yaml",
                      [f"data.prepared={prepared}", f"train.storage_path={root / 'ray'}",
                       "train.rank_weight=1.0",  # the demo's training: paper loss + candidate ranking
                       f"train.tensorboard_dir={root / 'tb'}", f"train.mlflow_uri=sqlite:///{root / 'mlflow.db'}"])
    return cfg, root


def resume_lines() -> list[str]:
    """The ``[ag] resuming at epoch N`` lines rank 0 has printed so far in this test
    session's Ray cluster (workers' stdout files; the session runs without log_to_driver)."""
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    return [line for f in sorted(logs.glob("worker-*.out"))
            for line in f.read_text(errors="replace").splitlines() if "[ag] resuming at epoch" in line]


@pytest.fixture(scope="module")
def faulted(setup, ray_session):
    cfg, root = setup
    marker = root / "rank1-exited"
    ncf_ckpt = pretrain(cfg)
    before = len(resume_lines())
    # The fault comes in the last epoch (2): a worker's report queue holds one report, so both
    # ranks (in lockstep through DDP) could put their epoch-1 reports only after the controller
    # had taken their epoch-0 reports, an epoch before the fault. The epoch-0 checkpoint is
    # registered by then, and the restarted workers must resume from it (or epoch 1's).
    model_dir = train(cfg, "ag", fail_once={"epoch": 2, "step": 1, "rank": 1, "marker": str(marker)})
    return {"cfg": cfg, "root": root, "ncf": ncf_ckpt, "dir": model_dir, "marker": marker,
            "resumed": resume_lines()[before:],
            "metrics": json.loads((Path(model_dir) / "metrics.json").read_text())}


def epoch_dirs(root: Path, name: str) -> list[str]:
    return sorted(p.name for p in (root / "ray" / name).glob("epoch_*"))


def test_pretraining_checkpoints_every_epoch(faulted):
    cfg, root = faulted["cfg"], faulted["root"]
    assert (Path(faulted["ncf"]) / "model.pt").is_file()
    record = json.loads((root / "ray" / "tiny-ncf" / "pretrained.json").read_text())
    assert [h["epoch"] for h in record["history"]] == list(range(cfg.train.pretrain_epochs))
    assert epoch_dirs(root, "tiny-ncf")[-1] == f"epoch_{cfg.train.pretrain_epochs - 1:04d}"
    assert record["history"][-1]["loss"] < record["history"][0]["loss"]


def test_worker_failure_resumes_and_finishes(faulted):
    cfg, hist = faulted["cfg"], faulted["metrics"]["history"]
    assert faulted["marker"].exists()  # rank 1 did exit mid-epoch 2
    # the new worker group restored a checkpoint (epoch 1's, or epoch 0's if the controller had
    # not registered epoch 1's yet) and continued there: it did not start over
    assert len(faulted["resumed"]) == 1, faulted["resumed"]
    assert re.search(r"\[ag\] resuming at epoch [12] \(best val F1 ", faulted["resumed"][0]), faulted["resumed"]
    assert [h["epoch"] for h in hist] == list(range(cfg.train.epochs))  # every epoch exactly once
    assert all(h["records"] == hist[0]["records"] for h in hist)
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert epoch_dirs(faulted["root"], "tiny-ag")[-1] == f"epoch_{cfg.train.epochs - 1:04d}"
    best = faulted["metrics"]["best_val_f1"]
    assert best == max(h["val_f1"] for h in hist)
    assert faulted["metrics"]["checkpoint"].endswith(f"epoch_{faulted['metrics']['best_epoch']:04d}")


def test_negatives_come_from_both_ranks(faulted):
    for h in faulted["metrics"]["history"]:
        assert 0.2 < h["neg_remote_frac"] < 0.8  # ~half of the global batch lives on the other rank
        assert h["gather_bytes_per_step"] > 0


def test_candidate_ranking_term_trains_when_enabled(faulted):
    cfg = faulted["cfg"]
    assert cfg.train.rank_weight > 0 and cfg.train.hard_negatives == 0  # as the setup fixture asks
    for h in faulted["metrics"]["history"]:
        assert h["rank_loss"] > 0  # each patient's own candidate set was scored and ranked
        assert h["hood_neg_share"] == 0.0  # all BPR negatives from the global batch


def test_tensorboard_and_mlflow_follow_the_run_through_the_fault(faulted):
    from tracking_files import mlflow_runs, tensorboard_scalars

    cfg, root, history = faulted["cfg"], faulted["root"], faulted["metrics"]["history"]
    epochs = list(range(cfg.train.epochs))
    tb = tensorboard_scalars(root / "tb" / "tiny-ag")
    assert {"loss", "val_f1", "best_val_f1", "samples_per_s", "rank_loss"} <= set(tb)
    for key in ("loss", "val_f1"):
        last = dict(tb[key])  # an epoch redone after the fault is logged again; the last value is the kept one
        assert sorted(last) == epochs
        assert [last[e] for e in epochs] == pytest.approx([h[key] for h in history], rel=1e-6)
    assert sorted(dict(tensorboard_scalars(root / "tb" / "tiny-ncf")["loss"])) == list(
        range(cfg.train.pretrain_epochs))  # the pre-training run is its own TensorBoard run
    runs = mlflow_runs(cfg.train.mlflow_uri)
    ag = runs["tiny-ag"]  # one MLflow run across the worker group's restart (same controller)
    assert ag["status"] == "FINISHED" and ag["params"]["train.rank_weight"] == "1.0"
    last = dict(ag["metrics"]["val_f1"])
    assert [last[e] for e in epochs] == pytest.approx([h["val_f1"] for h in history], rel=1e-9)
    assert runs["tiny-ncf"]["status"] == "FINISHED" and runs["tiny-ncf"]["params"]["model.name"] == cfg.model.name


def test_same_seed_same_metrics_with_s3_storage(faulted, s3_server):
    """A clean run with the same seed (checkpoints and model directory on S3) equals the faulted one."""
    cfg = faulted["cfg"]
    cfg = replace(cfg, train=replace(cfg.train, name="tiny-s3", storage_path="s3://dpr/runs"))
    uri = train(cfg, "ag", pretrained=faulted["ncf"])
    assert uri == "s3://dpr/runs/tiny-s3-ag/model"
    other = load_model_dir(uri).metrics
    for a, b in zip(faulted["metrics"]["history"], other["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["val_f1"] == pytest.approx(b["val_f1"], rel=1e-5)
    assert other["checkpoint"].startswith("s3://dpr/runs/tiny-s3-ag/epoch_")


def test_rerun_with_the_same_name_resumes_and_evaluates(faulted, capsys, caplog):
    root = faulted["root"]
    before = epoch_dirs(root, "tiny-ag"), epoch_dirs(root, "tiny-ncf")
    with caplog.at_level(logging.INFO, logger="dpr_dist.train.run"):
        out = run_job(faulted["cfg"], models=["ag"], baselines=["ncf", "popularity"])
    assert (epoch_dirs(root, "tiny-ag"), epoch_dirs(root, "tiny-ncf")) == before  # no extra epochs
    # the finished run is read back from its stored checkpoints, no worker group started
    assert f"run tiny-ag has finished its {faulted['cfg'].train.epochs} epochs: reusing it" in caplog.text
    assert list(out["metrics"]) == ["ncf", "popularity", "ag"]
    assert "test metrics" in capsys.readouterr().out
    metrics = load_model_dir(out["model_dirs"]["ag"]).metrics
    assert metrics["history"] == faulted["metrics"]["history"]
    assert metrics["test"]["n"] == out["metrics"]["ag"]["n"]


def test_type_loss_over_the_pairs_of_r(faulted):
    """``model.type_targets: relation`` with a warm-up on Ray Train: every rank gets R's
    labelled pairs, warms the type head up and trains; the model directory loads and
    evaluates without them."""
    import ray

    cfg = faulted["cfg"].with_overrides(["model.type_targets=relation", "model.type_warmup=200", "train.epochs=1",
                                         "train.name=tiny-rel"])
    bundle = load_model_dir(train(cfg, "ag", pretrained=faulted["ncf"]))
    n = relation_pairs(bundle.relation)[2].size
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    said = [line for f in sorted(logs.glob("worker-*.out")) for line in f.read_text(errors="replace").splitlines()
            if "interaction-type loss over the" in line or "type warm-up" in line]
    assert n > 0 and len(said) == 2 and f"over the {n} labelled pairs of R" in said[0], said
    warm = re.search(r"type warm-up: 200 steps, type loss ([0-9.]+) -> ([0-9.]+)", said[1])
    before, after = map(float, warm.groups())
    assert after < before
    assert bundle.cfg.model.type_targets == "relation" and np.isfinite(bundle.metrics["history"][0]["loss"])
    metrics, _ = evaluate_models(bundle, read_records(cfg.data.prepared, "test"), ["ag"])
    assert metrics["ag"]["type_pairs"] == n and 0 <= metrics["ag"]["type_balanced_accuracy"] <= 1


def test_model_dir_needs_no_training_data(faulted):
    prepared = Path(faulted["cfg"].data.prepared)
    test = read_records(str(prepared), "test")
    hidden = prepared.with_name("prepared-hidden")
    prepared.rename(hidden)
    try:
        bundle = load_model_dir(faulted["dir"])
        metrics, pred = evaluate_models(bundle, test, ["ag", "ncf", "popularity", "nn"])
    finally:
        hidden.rename(prepared)
    assert pred.num_rows == 4 * test.num_rows
    for m in metrics.values():
        assert 0 <= m["f1"] <= 1 and m["n"] == test.num_rows
    assert metrics["ag"]["f1"] <= metrics["ag"]["ceiling_f1"]


def test_job_scripts_parse_their_arguments(tmp_path):
    cfg = job_config("x", ["--config", str(REPO / "configs" / "tiny.yaml"), "--set", "train.epochs=7"])
    assert cfg.train.epochs == 7 and cfg.train.name == "tiny"
    for script in ("train_ag.py", "demo.py"):  # the others share their header
        res = subprocess.run([sys.executable, str(REPO / "jobs" / script), "--help"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and "--config" in res.stdout, res.stderr


def test_pretrained_names_a_run_or_a_checkpoint_directory(tmp_path):
    from dpr_dist.train.run import pretrained_record

    ckpt = tmp_path / "run" / "checkpoint_0003"
    ckpt.mkdir(parents=True)
    (ckpt / "model.pt").write_bytes(b"w")
    assert pretrained_record(str(ckpt))["checkpoint"] == str(ckpt)
    (tmp_path / "run" / "pretrained.json").write_text(json.dumps({"checkpoint": str(ckpt), "epochs": 8}))
    assert pretrained_record(str(tmp_path / "run") + "/") == {"checkpoint": str(ckpt), "epochs": 8}
    (ckpt / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match=f"names the checkpoint {ckpt}, which has no model.pt"):
        pretrained_record(str(tmp_path / "run"))
    with pytest.raises(FileNotFoundError, match="neither a pre-training run directory"):
        pretrained_record(str(ckpt))


def test_patience_stops_a_run_that_no_longer_improves(faulted, caplog):
    # at learning rate 0 the GNN's weights, and so its validation F1, stay as they start: with
    # patience 1 the run trains epochs 0 and 1, stops, keeps epoch 0, and a re-run reuses it
    cfg = faulted["cfg"]
    cfg = replace(cfg, train=replace(cfg.train, epochs=5, patience=1, lr=0.0))
    metrics = json.loads((Path(train(cfg, "gnn")) / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    assert metrics["history"][0]["val_f1"] == metrics["history"][1]["val_f1"]
    assert metrics["best_epoch"] == 0 and metrics["checkpoint"].endswith("epoch_0000")
    with caplog.at_level(logging.INFO, logger="dpr_dist.train.run"):
        train(cfg, "gnn")
    assert "run tiny-gnn stopped early after epoch 2 (train.patience 1): reusing it" in caplog.text
    assert epoch_dirs(faulted["root"], "tiny-gnn") == ["epoch_0000", "epoch_0001"]


def test_averaged_weights_resume_as_an_uninterrupted_run(faulted):
    # train.ema_decay: a worker dies mid-epoch 2; the restarted group restores the raw weights,
    # the optimiser and the average, and the run equals a clean one with the same seed
    cfg = faulted["cfg"]
    cfg = replace(cfg, train=replace(cfg.train, ema_decay=0.9))
    marker = faulted["root"] / "ema-rank1-exited"
    hurt = replace(cfg, train=replace(cfg.train, name="tiny-ema"))
    hurt_dir = train(hurt, "gnn", pretrained=faulted["ncf"],
                     fail_once={"epoch": 2, "step": 1, "rank": 1, "marker": str(marker)})
    clean = replace(cfg, train=replace(cfg.train, name="tiny-ema-clean"))
    clean_dir = train(clean, "gnn", pretrained=faulted["ncf"])
    assert marker.exists()
    a, b = load_model_dir(hurt_dir).metrics, load_model_dir(clean_dir).metrics
    for x, y in zip(a["history"], b["history"], strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
        assert x["val_f1"] == pytest.approx(y["val_f1"], rel=1e-5)
    # the checkpoint keeps both weight sets; the model directory ships the average, which
    # validation scored, not the optimiser's last weights
    import torch

    ckpt = Path(b["checkpoint"])
    averaged = torch.load(ckpt / "model.pt", weights_only=True)
    raw = torch.load(ckpt / "raw.pt", weights_only=True)
    shipped = torch.load(Path(clean_dir) / "model.pt", weights_only=True)
    assert all(torch.equal(shipped[k], averaged[k]) for k in averaged)
    assert any(not torch.equal(raw[k], averaged[k]) for k in averaged if raw[k].is_floating_point())
    assert json.loads((ckpt / "state.json").read_text())["averaged_steps"] > 0
    last = f"epoch_{cfg.train.epochs - 1:04d}"  # the resumed average went on from the restored one
    for name in ("model.pt", "raw.pt"):
        got = torch.load(faulted["root"] / "ray" / "tiny-ema-gnn" / last / name, weights_only=True)
        want = torch.load(faulted["root"] / "ray" / "tiny-ema-clean-gnn" / last / name, weights_only=True)
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-7)
