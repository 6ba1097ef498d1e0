"""Hyperparameter sweeps: Ray Tune + Optuna (TPE) + ASHA over distributed Ray Train runs.

:func:`run_sweep` (``dpr tune``, ``jobs/tune.py``) runs one sweep of a DPR variant:

1. NCF pre-training once for the whole sweep (``<sweep>/pretrain-ncf``), and on the
   driver, once, the inputs every trial shares: the training split as a materialized
   Ray Dataset, the validation candidate sets and the pre-trained weights (object refs);
2. a :class:`ray.tune.Tuner` over :func:`run_trial`, the Ray Tune driver-function
   pattern of Ray Train V2: each trial builds a ``TorchTrainer`` with ``train.num_workers``
   workers whose per-epoch reports reach Tune through :class:`EpochReport` (a
   ``TuneReportCallback``); Optuna's seeded TPE sampler proposes the parameters
   (:func:`dpr_dist.tune.space.search_space`) and ASHA stops trials whose best validation
   F1 falls behind at a rung; the placement groups of stopped trials' Train runs are
   removed by :class:`dpr_dist.tune.cleanup.PlacementGroupReaper`;
3. the report and the best trial's model directory (:mod:`dpr_dist.tune.report`).

A sweep lives in ``<tune.storage_path or train.storage_path>/<tune.name>`` (local or
``s3://``); running it again with the same name and configuration resumes it
(``Tuner.restore``): finished trials are kept, unfinished and errored ones continue from
their Train checkpoints. ``docs/tuning.md`` has the details and the design decisions.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Any

import optuna
import pyarrow as pa
import pyarrow.fs as pafs
import ray
import ray.tune
import torch
from ray.tune.integration.ray_train import TuneReportCallback

from dpr_dist.config import Config, config_from_dict
from dpr_dist.data import io
from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.eval.evaluate import encode_records
from dpr_dist.eval.metrics import mean_package_size
from dpr_dist.models.variants import VARIANTS
from dpr_dist.runtime import ensure_ray
from dpr_dist.train.collate import RECORD_COLUMNS, package_csr
from dpr_dist.train.run import (Prepared, load_ncf, load_prepared, pretrain, pretrained_checkpoint, read_records,
                                train_dataset)
from dpr_dist.train.worker import RunSpec, ValidationData, train_loop
from dpr_dist.tune import report
from dpr_dist.tune.cleanup import PlacementGroupReaper, RegisterPlacementGroup
from dpr_dist.tune.space import (EPOCHS_KEY, METRIC, asha_scheduler, default_point, max_concurrent_trials,
                                 search_space, trial_config, worker_resources)

log = logging.getLogger(__name__)

#: Resources of a trial's driver function (it only launches and watches its Train run):
#: no CPU, so a trial needs exactly its workers' resources.
DRIVER_RESOURCES = {"CPU": 0, "memory": 256 * 1024**2}
#: Configuration sections that must not change when a sweep is resumed.
FROZEN_SECTIONS = ("data", "model", "train", "eval", "tune")


def sweep_dir(cfg: Config) -> str:
    """``<tune.storage_path or train.storage_path>/<tune.name>`` (local paths made absolute)."""
    root = cfg.tune.storage_path or cfg.train.storage_path
    return io.join(root if io.is_s3(root) else os.path.abspath(root), cfg.tune.name)


def _fs_path(uri: str) -> tuple[str, pafs.FileSystem | None]:
    """``(path, filesystem)`` as Ray's ``storage_path`` / ``storage_filesystem`` want them."""
    if io.is_s3(uri):
        fs, path = io.filesystem(uri)
        return path, fs
    return uri, None


class EpochReport(TuneReportCallback):
    """``TuneReportCallback`` adding :data:`EPOCHS_KEY` (``epoch + 1``) to every result,
    so that ASHA counts Train epochs even in a trial that resumed its Train run."""

    def after_report(self, run_context, metrics, checkpoint) -> None:  # noqa: D102 - see class
        first = {**metrics[0], EPOCHS_KEY: int(metrics[0]["epoch"]) + 1}
        super().after_report(run_context, [first, *metrics[1:]], checkpoint)


@dataclass
class TrialContext:
    """What every trial shares (sent once through ``tune.with_parameters``).

    Attributes:
        cfg: The sweep's configuration (``model.name`` = the swept variant).
        dataset: The training split (``RECORD_COLUMNS``), a materialized Ray Dataset.
        val: Object ref of the :class:`ValidationData` (candidate sets from the NCF).
        pretrained: Object ref of the pre-trained NCF state dict.
        num_drugs, num_doc_words: Vocabulary sizes.
        runs: ``<sweep>/runs``: where the trials' Train runs live.
        reaper: The sweep's :class:`~dpr_dist.tune.cleanup.PlacementGroupReaper`.
    """

    cfg: Config
    dataset: Any
    val: Any
    pretrained: Any
    num_drugs: int
    num_doc_words: int
    runs: str
    reaper: Any


def train_run_name(trial_id: str, kind: str) -> str:
    """Name of a trial's Ray Train run (stable across restores, so the run resumes)."""
    return f"{trial_id}-{kind}"


def run_trial(config: dict, ctx: TrialContext) -> None:
    """A Tune trial: one distributed Ray Train run with the trial's parameters."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = trial_config(ctx.cfg, config)
    tc, kind = cfg.train, cfg.model.name
    spec = RunSpec(cfg=cfg, kind=kind, epochs=tc.epochs, num_drugs=ctx.num_drugs, num_doc_words=ctx.num_doc_words,
                   val=ctx.val, pretrained=ctx.pretrained)
    ingest = DataConfig.default_ingest_options()
    ingest.preserve_order = True  # deterministic shards, as in dpr_dist.train.run.fit
    path, fs = _fs_path(ctx.runs)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"spec": spec},
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                                     resources_per_worker=worker_resources(cfg)),
        run_config=RunConfig(
            name=train_run_name(ray.tune.get_context().get_trial_id(), kind), storage_path=path,
            storage_filesystem=fs, failure_config=FailureConfig(max_failures=tc.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val_f1",
                                               checkpoint_score_order="max"),
            callbacks=[EpochReport(), RegisterPlacementGroup(ctx.reaper)]),
        datasets={"train": ctx.dataset},
        dataset_config=DataConfig(datasets_to_split=["train"], execution_options=ingest),
    )
    trainer.fit()


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _check_config(cfg: Config, root: str) -> None:
    """Record the sweep's configuration, or check that a resumed sweep keeps it."""
    uri = io.join(root, "sweep_config.json")
    if not io.exists(uri):
        io.write_json(cfg.to_dict(), uri)
        return
    stored, current = config_from_dict(io.read_json(uri)).to_dict(), cfg.to_dict()
    changed = [f"{s}.{k}" for s in FROZEN_SECTIONS for k in current[s] if stored[s].get(k) != current[s][k]]
    changed += ["seed"] if stored["seed"] != current["seed"] else []
    if changed:
        raise ValueError(f"sweep {root} exists with another configuration (changed: {', '.join(changed)}); "
                         "resume it unchanged or choose another tune.name")


def _prepared(cfg: Config) -> Prepared:
    """The prepared data, checked against the threshold range (graphs are never rebuilt)."""
    prep = load_prepared(cfg.data.prepared)
    built = float(prep.manifest.get("build_threshold", 0.0))
    if cfg.tune.threshold[0] < built:
        raise ValueError(f"tune.threshold={list(cfg.tune.threshold)} starts below the build threshold {built} "
                         f"of {prep.path}; raise tune.threshold or re-run `dpr prepare` with a lower "
                         "data.build_threshold")
    return prep


def _inputs(cfg: Config, prep: Prepared, ncf_uri: str) -> dict[str, Any]:
    """Prepared data, the pre-trained NCF, its candidate index of the training patients and
    NCF's ``K`` (for the trials' validation and the export of the best trial)."""
    ncf = load_ncf(ncf_uri, cfg, prep.num_drugs, prep.num_doc_words)
    train_tab = read_records(prep.path, "train")
    with torch.no_grad():
        index = CandidateIndex(encode_records(ncf.encode, train_tab, prep.num_doc_words, cfg.eval.batch_size),
                               package_csr(train_tab), train_tab["record_id"].to_pylist())
    return {"prep": prep, "ncf": ncf, "index": index, "top_k": mean_package_size(package_csr(train_tab)),
            "ncf_uri": ncf_uri}


def _trial_context(cfg: Config, inputs: dict[str, Any], reaper) -> TrialContext:
    """What the trials share, built once: validation candidates, weights, training data."""
    prep, ncf = inputs["prep"], inputs["ncf"]
    val_tab = read_records(prep.path, "val")
    with torch.no_grad():
        u = encode_records(ncf.encode, val_tab, prep.num_doc_words, cfg.eval.batch_size)
    val = ValidationData(val_tab, inputs["index"].query(u, k=cfg.eval.neighbors), inputs["top_k"], prep.relation,
                         prep.cooc)
    ds = train_dataset(prep.path, RECORD_COLUMNS)
    return TrialContext(cfg=cfg, dataset=ds, val=ray.put(val), pretrained=ray.put(ncf.state_dict()),
                        num_drugs=prep.num_drugs, num_doc_words=prep.num_doc_words,
                        runs=io.join(sweep_dir(cfg), "runs"), reaper=reaper)


def _trainable(ctx: TrialContext | None):
    return ray.tune.with_resources(ray.tune.with_parameters(run_trial, ctx=ctx), DRIVER_RESOURCES)


def _finished(cfg: Config) -> bool:
    """Whether the stored sweep of this name ran all its trials, none failed."""
    path, fs = _fs_path(sweep_dir(cfg))
    if not ray.tune.Tuner.can_restore(path, storage_filesystem=fs):
        return False
    trials = ray.tune.ExperimentAnalysis(path, storage_filesystem=fs).trials
    return len(trials) >= cfg.tune.num_samples and all(t.status == "TERMINATED" for t in trials)


def _tuner(cfg: Config, ctx: TrialContext, space: dict) -> tuple[ray.tune.Tuner, bool]:
    """A new Tuner, or the stored one of this sweep name (``resumed`` True)."""
    root = sweep_dir(cfg)
    path, fs = _fs_path(root)
    if ray.tune.Tuner.can_restore(path, storage_filesystem=fs):
        log.info("resuming sweep %s", root)
        return ray.tune.Tuner.restore(path, trainable=_trainable(ctx), resume_errored=True,
                                      storage_filesystem=fs), True
    from ray.tune.search.optuna import OptunaSearch

    t = cfg.tune
    concurrent = max_concurrent_trials(cfg, ray.cluster_resources())
    log.info("sweep %s: %d trials, %d at a time, %s workers each", root, t.num_samples, concurrent,
             {k: v * cfg.train.num_workers for k, v in worker_resources(cfg).items()})
    point = default_point(cfg, space) if t.defaults_first else None
    searcher = OptunaSearch(space=space, metric=METRIC, mode="max", points_to_evaluate=[point] if point else None,
                            sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    scheduler = asha_scheduler(cfg)
    parent, name = path.rsplit("/", 1)
    tuner = ray.tune.Tuner(
        _trainable(ctx),
        tune_config=ray.tune.TuneConfig(metric=METRIC, mode="max", search_alg=searcher, scheduler=scheduler,
                                        num_samples=t.num_samples, max_concurrent_trials=concurrent,
                                        trial_dirname_creator=_trial_dirname),
        run_config=ray.tune.RunConfig(name=name, storage_path=parent, storage_filesystem=fs,
                                      failure_config=ray.tune.FailureConfig(max_failures=cfg.train.max_failures)),
    )
    return tuner, False


def run_sweep(cfg: Config, model: str | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep of ``tune.name`` and export its best trial.

    Args:
        cfg: The configuration; ``data.prepared`` must hold prepared data whose build
            threshold is at most ``tune.threshold[0]``.
        model: The DPR variant to tune (default ``model.name``).

    Returns:
        A JSON-able summary: ``sweep_dir``, ``resumed``, ``trials``, ``stopped_early``,
        ``best_trial``, ``best_params``, ``best_val_f1``, ``model_dir`` (``<sweep>/best``),
        ``test`` (its test metrics), ``defaults`` (the defaults trial's ``trial_id``,
        ``params``, ``best_val_f1``, ``model_dir`` and ``test``; None without one) and the
        report's file URIs.

    Raises:
        FileNotFoundError: when ``data.prepared`` holds no prepared data.
        ValueError: for an unknown variant, a bad range (also a threshold range starting
            below the prepared data's build threshold) or a resumed sweep whose
            configuration changed.
    """
    kind = model or cfg.model.name
    if kind not in VARIANTS:
        raise ValueError(f"tune: model {kind!r} is not a DPR variant; expected one of {sorted(VARIANTS)}")
    cfg = replace(cfg, model=replace(cfg.model, name=kind))
    if cfg.train.rank_weight > 0 or cfg.train.hard_negatives > 0:
        log.warning("sweep trials train with the paper's loss only: train.rank_weight=%s and "
                    "train.hard_negatives=%s apply to dpr train / dpr pipeline, not to trials",
                    cfg.train.rank_weight, cfg.train.hard_negatives)
    space = search_space(cfg, kind)
    root = sweep_dir(cfg)
    prep = _prepared(cfg)
    _check_config(cfg, root)
    ensure_ray()
    pre_cfg = replace(cfg, train=replace(cfg.train, storage_path=root, name="pretrain"))
    record = pretrained_checkpoint(pre_cfg)
    ncf_uri = record["checkpoint"] if record else pretrain(pre_cfg)
    inputs = None
    if _finished(cfg):  # nothing left to run: read the results back
        path, fs = _fs_path(root)
        grid = ray.tune.Tuner.restore(path, trainable=_trainable(None), storage_filesystem=fs).get_results()
        resumed = True
    else:
        inputs = _inputs(cfg, prep, ncf_uri)
        reaper = PlacementGroupReaper.remote()
        try:
            tuner, resumed = _tuner(cfg, _trial_context(cfg, inputs, reaper), space)
            grid = tuner.fit()
        finally:
            ray.kill(reaper)
    table = report.results_table(grid, space, cfg.train.epochs, metric=METRIC, epochs_key=EPOCHS_KEY)
    defaults = report.defaults_trial(table, default_point(cfg, space) if cfg.tune.defaults_first else None)
    table = table.append_column("defaults", pa.array([defaults is not None and r == defaults["trial_id"]
                                                      for r in table["trial_id"].to_pylist()]))
    files = report.write_report(table, space, root, seed=cfg.seed)
    best = report.best_row(table)

    def export(row: dict[str, Any], sub: str) -> dict[str, Any]:
        nonlocal inputs
        out, params = io.join(root, sub), {report.column(k): row[report.column(k)] for k in space}
        test = report.exported_test(out, row["trial_id"])
        if test is None:
            inputs = inputs or _inputs(cfg, prep, ncf_uri)
            test = report.export_best(out, cfg=trial_config(cfg, params), trial=row, s3=io.is_s3(root), **inputs)
        return {"trial_id": row["trial_id"], "params": params, "best_val_f1": row["best_val_f1"], "model_dir": out,
                "test": test}

    top = export(best, "best")
    if defaults is not None:
        defaults = top if defaults["trial_id"] == best["trial_id"] else export(defaults, "defaults")
    return {"sweep_dir": root, "resumed": resumed, "trials": table.num_rows,
            "stopped_early": sum(s == "stopped" for s in table["status"].to_pylist()),
            "best_trial": best["trial_id"], "best_params": top["params"], "best_val_f1": best["best_val_f1"],
            "model_dir": top["model_dir"], "test": top["test"], "defaults": defaults, **files}
