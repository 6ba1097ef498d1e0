"""Hyperparameter sweeps: Ray Tune + Optuna (TPE) + ASHA over distributed Ray Train runs.

:func:`run_sweep` (``dpr tune``, ``jobs/tune.py``) runs one sweep of a DPR variant:

1. NCF pre-training once for the whole sweep (``<sweep>/pretrain-ncf``, or a given one),
   and on the driver, once, the inputs every trial shares (:mod:`dpr_dist.tune.trial`);
2. a :class:`ray.tune.Tuner` over :func:`~dpr_dist.tune.trial.run_trial`, the Ray Tune
   driver-function pattern of Ray Train V2: each trial builds a ``TorchTrainer`` with
   ``train.num_workers`` workers whose per-epoch reports reach Tune (a
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
from dataclasses import replace
from typing import Any

import optuna
import pyarrow as pa
import ray
import ray.tune

from dpr_dist.config import Config, config_from_dict
from dpr_dist.data import io
from dpr_dist.models.variants import VARIANTS
from dpr_dist.runtime import ensure_ray
from dpr_dist.train.prepared import Prepared, load_prepared
from dpr_dist.train.run import pretrain, pretrained_checkpoint, pretrained_record, run_name
from dpr_dist.train.tracking import sweep_callbacks
from dpr_dist.tune import report
from dpr_dist.tune.cleanup import PlacementGroupReaper
from dpr_dist.tune.space import (EPOCHS_KEY, METRIC, asha_scheduler, default_point, max_concurrent_trials,
                                 search_space, trial_config, worker_resources)
from dpr_dist.tune.trial import TrialContext, run_trial, shared_inputs, train_run_name, trial_context

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


def _trainable(ctx: TrialContext | None):
    return ray.tune.with_resources(ray.tune.with_parameters(run_trial, ctx=ctx), DRIVER_RESOURCES)


def _trial_states(cfg: Config) -> dict[str, str]:
    """Tune's status of each stored trial of this sweep (``TERMINATED``, ``RUNNING``, ...)."""
    path, fs = io.ray_storage(sweep_dir(cfg))
    if not ray.tune.Tuner.can_restore(path, storage_filesystem=fs):
        return {}
    return {t.trial_id: t.status for t in ray.tune.ExperimentAnalysis(path, storage_filesystem=fs).trials}


def _finished(cfg: Config) -> bool:
    """Whether the stored sweep of this name ran all its trials, none failed."""
    states = _trial_states(cfg)
    return len(states) >= cfg.tune.num_samples and all(s == "TERMINATED" for s in states.values())


def _tuner(cfg: Config, ctx: TrialContext, space: dict) -> tuple[ray.tune.Tuner, bool]:
    """A new Tuner, or the stored one of this sweep name (``resumed`` True)."""
    root = sweep_dir(cfg)
    path, fs = io.ray_storage(root)
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
                                      failure_config=ray.tune.FailureConfig(max_failures=cfg.train.max_failures),
                                      callbacks=sweep_callbacks(cfg)),
    )
    return tuner, False


def _ncf_checkpoint(cfg: Config, root: str, pretrained: str | None) -> str:
    """The sweep's NCF checkpoint: ``pretrained`` (recorded, so that a resumed sweep keeps
    it), the one a resumed sweep was given, or the sweep's own pre-training run."""
    pre_cfg = replace(cfg, train=replace(cfg.train, storage_path=root, name="pretrain"))
    record_uri = io.join(root, run_name(pre_cfg, "ncf"), "pretrained.json")
    stored = io.read_json(record_uri) if io.exists(record_uri) else None
    if pretrained is not None:
        given = pretrained_record(pretrained)
        if stored is not None and stored["checkpoint"] != given["checkpoint"]:
            raise ValueError(f"sweep {root} runs from the NCF checkpoint {stored['checkpoint']}, not "
                             f"{given['checkpoint']}; resume it with that one or choose another tune.name")
        if stored is None:
            io.write_json({**given, "source": pretrained}, record_uri)
        return given["checkpoint"]
    if stored is not None and "source" in stored:  # a resumed sweep that was given its NCF
        return stored["checkpoint"]
    record = pretrained_checkpoint(pre_cfg)
    return record["checkpoint"] if record else pretrain(pre_cfg)


def run_sweep(cfg: Config, model: str | None = None, pretrained: str | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep of ``tune.name`` and export its best trial.

    Args:
        cfg: The configuration; ``data.prepared`` must hold prepared data whose build
            threshold is at most ``tune.threshold[0]``.
        model: The DPR variant to tune (default ``model.name``).
        pretrained: An NCF pre-training to start every trial from instead of the sweep's
            own (a pre-training run directory with ``pretrained.json``, or a checkpoint
            directory with ``model.pt``; local or ``s3://``). It must be pre-trained on the
            same prepared data.

    Returns:
        A JSON-able summary: ``sweep_dir``, ``resumed``, ``trials`` (started),
        ``complete`` (False when the sweep was stopped before all ``planned`` trials
        finished; ``interrupted`` lists the trials a re-run continues), ``stopped_early``,
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
    space = search_space(cfg, kind)
    root = sweep_dir(cfg)
    prep = _prepared(cfg)
    _check_config(cfg, root)
    ensure_ray()
    ncf_uri = _ncf_checkpoint(cfg, root, pretrained)
    inputs = None
    if _finished(cfg):  # nothing left to run: read the results back
        path, fs = io.ray_storage(root)
        grid = ray.tune.Tuner.restore(path, trainable=_trainable(None), storage_filesystem=fs).get_results()
        resumed = True
    else:
        inputs = shared_inputs(cfg, prep, ncf_uri)
        reaper = PlacementGroupReaper.remote()
        try:
            ctx = trial_context(cfg, inputs, space, io.join(root, "runs"), reaper)
            tuner, resumed = _tuner(cfg, ctx, space)
            grid = tuner.fit()
        finally:
            ray.kill(reaper)
    # trials Tune left unfinished: the sweep was stopped (SIGINT) or its driver died; a re-run resumes them
    unfinished = {t for t, state in _trial_states(cfg).items() if state not in ("TERMINATED", "ERROR")}
    # the Train runs, not Tune's results, hold a resumed trial's epochs from before the resume
    table = report.results_table(grid, space, cfg.train.epochs, metric=METRIC, epochs_key=EPOCHS_KEY,
                                 unfinished=unfinished, patience=cfg.train.patience,
                                 train_runs=lambda trial: io.join(root, "runs", train_run_name(trial, kind)))
    complete = table.num_rows >= cfg.tune.num_samples and not unfinished
    if not complete:
        log.warning("sweep %s stopped before its end: %d of %d trials started, %d interrupted; the report and "
                    "best/ cover those so far, and running the same command again resumes it", root,
                    table.num_rows, cfg.tune.num_samples, len(unfinished))
    defaults = report.defaults_trial(table, default_point(cfg, space) if cfg.tune.defaults_first else None)
    table = table.append_column("defaults", pa.array([defaults is not None and r == defaults["trial_id"]
                                                      for r in table["trial_id"].to_pylist()]))
    files = report.write_report(table, space, root, seed=cfg.seed)
    best = report.best_row(table)

    def export(row: dict[str, Any], sub: str) -> dict[str, Any]:
        nonlocal inputs
        out, params = io.join(root, sub), {report.column(k): row[report.column(k)] for k in space}
        test = report.exported_test(out, row)
        if test is None:
            inputs = inputs or shared_inputs(cfg, prep, ncf_uri)
            test = report.export_best(out, cfg=trial_config(cfg, params), trial=row, s3=io.is_s3(root), **inputs)
        return {"trial_id": row["trial_id"], "params": params, "best_val_f1": row["best_val_f1"], "model_dir": out,
                "test": test}

    top = export(best, "best")
    if defaults is not None:
        defaults = top if defaults["trial_id"] == best["trial_id"] else export(defaults, "defaults")
    return {"sweep_dir": root, "resumed": resumed, "trials": table.num_rows,
            "complete": complete, "planned": cfg.tune.num_samples, "interrupted": sorted(unfinished),
            "stopped_early": sum(s in ("stopped", "patience") for s in table["status"].to_pylist()),
            "best_trial": best["trial_id"], "best_params": top["params"], "best_val_f1": best["best_val_f1"],
            "model_dir": top["model_dir"], "test": top["test"], "defaults": defaults, **files}
