"""One tiny ``dpr pipeline`` run per session and the experiments on its output, shared by the
pipeline, experiment and experiment-store tests."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: The pipeline's models: Table 4 and popularity.
PIPELINE_RUN_MODELS = ("ncf", "nn", "package2vec", "lda", "br", "dam", "gnn", "wg", "ag", "popularity")


@pytest.fixture(scope="session")
def pipeline_run(tiny_data, tiny_prepared, tmp_path_factory):
    """``pipeline`` of every model on the tiny data (1 epoch each, 1 worker, two runs at a time).

    The session's prepared data is copied to ``out/prepared`` first: it was prepared from
    the same inputs and seed, so the pipeline reuses it instead of preparing again.
    """
    from dpr_dist.config import load_config
    from dpr_dist.eval.pipeline import pipeline

    out = tmp_path_factory.mktemp("pipeline")
    shutil.copytree(tiny_prepared["dir"], out / "prepared")
    # one worker per run: the 2-worker DDP path is tested in tests/train; here start-up dominates
    cfg = load_config(REPO / "configs" / "tiny.yaml", ["train.epochs=1", "train.pretrain_epochs=1",
                                                      "train.num_workers=1", "train.parallel_runs=2"])
    started = time.time_ns()
    result = pipeline(cfg, tiny_data["emr"], tiny_data["ddi"], str(out), ",".join(PIPELINE_RUN_MODELS))
    return {"out": out, "result": result, "cfg": cfg, "models": PIPELINE_RUN_MODELS, "emr": tiny_data["emr"],
            "ddi": tiny_data["ddi"], "span_ns": (started, time.time_ns())}


@pytest.fixture(scope="session")
def experiment(pipeline_run):
    """The experiments in the output directory of the session's tiny pipeline: same config and
    inputs, so its prepared data and its runs (pre-training, DPR-WG, DPR-AG) are reused."""
    from dpr_dist.eval.experiment_options import ExperimentOptions
    from dpr_dist.eval.experiments import run_experiments

    out = pipeline_run["out"]
    created = json.loads((out / "prepared" / "manifest.json").read_text())["created"]
    before = {m: sorted(p.name for p in (out / "runs" / f"tiny-{m}").glob("epoch_*")) for m in ("ncf", "wg", "ag")}
    res = run_experiments(pipeline_run["cfg"], str(out), "table6,fig6,fig8,case,generation",
                          ExperimentOptions(seeds=(0,), thresholds=(0.01, 0.1), mbr=1.0),
                          emr=pipeline_run["emr"], ddi=pipeline_run["ddi"])
    return {"out": out, "res": res, "report": out / "report", "created": created, "before": before,
            "pipeline": pipeline_run["result"]}
