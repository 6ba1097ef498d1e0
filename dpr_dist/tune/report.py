"""What a sweep leaves behind: the results table, the Optuna plots and the best model directory.

In the sweep directory (local or ``s3://``):

* ``results.parquet`` / ``results.md`` -- one row per trial (:func:`results_table`);
* ``history.png`` -- Optuna's optimization history; ``importance.png`` and
  ``importance.json`` -- fANOVA parameter importances (seeded), from an Optuna study
  rebuilt from the table (:func:`build_study`);
* ``best/`` -- the best trial's model directory (:func:`export_best`), written by the
  training code's writer, with the trial, its parameters and its test metrics in
  ``metrics.json``; serving and batch scoring load it like any model directory;
* ``defaults/`` -- the same for the trial of the configuration's own values
  (``tune.defaults_first``, :func:`defaults_trial`) when it is not the best.
"""

from __future__ import annotations

import io as _io
import logging
import math
import os
import warnings
from typing import Any, Callable, Collection, Mapping

import numpy as np
import optuna
import pyarrow as pa
import torch

from dpr_dist.config import Config
from dpr_dist.data import io
from dpr_dist.data.documents import NOTE_VOCAB_SIZE
from dpr_dist.eval.evaluate import evaluate
from dpr_dist.models.dpr import DPR
from dpr_dist.train.modeldir import load_model_dir, save_model_dir, update_metrics
from dpr_dist.train.prepared import read_records
from dpr_dist.train.stored import checkpoint_state, stopped_early, stored_run

log = logging.getLogger(__name__)

Space = Mapping[str, optuna.distributions.BaseDistribution]


def column(key: str) -> str:
    """Table column of a search-space key: ``data/threshold`` -> ``data.threshold``."""
    return key.replace("/", ".")


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + "/") if isinstance(v, Mapping) else {key: v})
    return out


def _trial_summary(df, max_epochs: int, metric: str, epochs_key: str) -> dict[str, Any]:
    """Best F1, its epoch and checkpoint, epochs run and wall time from a trial's Tune results."""
    empty = {"best_val_f1": None, "best_epoch": None, "epochs": 0, "wall_s": None, "checkpoint": None}
    if df is None or len(df) == 0 or "val_f1" not in df:
        return empty
    f1 = df["val_f1"].to_numpy(dtype=np.float64)
    i = int(np.argmax(f1))  # the first epoch reaching the best F1, as the workers count it
    ckpt = df["checkpoint_path"].iloc[i] if "checkpoint_path" in df else None
    return {"best_val_f1": float(df[metric].max()), "best_epoch": int(df["epoch"].iloc[i]),
            "epochs": int(df[epochs_key].max()), "wall_s": float(df["time_total_s"].iloc[-1]),
            "checkpoint": str(ckpt) if isinstance(ckpt, str) else None}


def train_run_summary(uri: str) -> dict[str, Any] | None:
    """Best F1, its epoch and checkpoint, epochs run and wall time from a trial's Ray Train
    run (``<sweep>/runs/<trial>-<kind>``, local or ``s3://``), or None when it saved no
    checkpoint yet.

    Unlike the trial's Tune results, which Tune starts afresh when a stopped sweep resumes
    a trial, the Train run keeps its whole history across resumes: the best checkpoint by
    ``val_f1`` from Ray Train's checkpoint manager (``ray.train.Result.from_path``), and
    the epochs and their times from the latest checkpoint's ``state.json``. ``wall_s`` is
    then the time spent in the trial's epochs (training and validation), summed over
    resumes.
    """
    run = stored_run(uri)
    if run is None:
        return None
    state = checkpoint_state(uri, run.checkpoint)
    best = [c for c, m in run.best_checkpoints if m.get("epoch") == state["best_epoch"]]
    ckpt = best[0] if best else run.get_best_checkpoint("val_f1", "max")
    return {"best_val_f1": float(state["best_val_f1"]), "best_epoch": int(state["best_epoch"]),
            "epochs": int(state["next_epoch"]), "wall_s": float(sum(h.get("epoch_s", 0.0) for h in state["history"])),
            "checkpoint": ckpt.path}


def results_table(results, space: Space, max_epochs: int, *, metric: str = "best_val_f1",
                  epochs_key: str = "epochs_done", unfinished: Collection[str] = (),
                  train_runs: Callable[[str], str] | None = None, patience: int = 0) -> pa.Table:
    """One row per trial of a ``ray.tune.ResultGrid``, in the order the trials were created.

    Columns: ``trial_id``; one per searched parameter (``data.threshold``, ...);
    ``best_val_f1`` and ``best_epoch`` (0-based; null when the trial reported nothing);
    ``epochs`` run; ``wall_s`` (the trial's training time); ``status`` (``completed``,
    ``patience``: its workers ended it because its validation F1 had not risen for
    ``patience`` epochs (``train.patience``), ``stopped`` by ASHA, ``interrupted`` for the
    ids in ``unfinished``: trials still running when the sweep was stopped, which a resumed
    sweep continues; or ``error``);
    ``checkpoint`` (Train checkpoint of the best epoch).

    ``train_runs`` maps a trial id to its Ray Train run; where that run has a checkpoint,
    the F1, best epoch, checkpoint and time columns come from it (:func:`train_run_summary`,
    right across resumes), otherwise from the trial's Tune results. ``epochs`` is the
    last epoch Tune saw (which a resume keeps, since workers count epochs in their
    checkpoints), or the Train run's when Tune saw none since a resume.
    """
    rows = []
    for r in results:
        params = _flatten(r.config or {})
        trial_id = (r.metrics or {}).get("trial_id") or os.path.basename(r.path).removeprefix("trial_")
        s = _trial_summary(r.metrics_dataframe, max_epochs, metric, epochs_key)
        run = train_runs and train_run_summary(train_runs(trial_id))
        if run:  # epochs: as Tune counted them (ASHA's view) unless Tune saw none since a resume
            s = {**run, "epochs": s["epochs"] or run["epochs"]}
        converged = s["best_epoch"] is not None and stopped_early(s["epochs"], s["best_epoch"], patience)
        status = ("error" if r.error else "interrupted" if trial_id in unfinished
                  else "completed" if s["epochs"] >= max_epochs else "patience" if converged else "stopped")
        rows.append({"trial_id": trial_id, **{column(k): params.get(k) for k in space}, **s, "status": status})
    types = {column(k): pa.int64() if isinstance(d, optuna.distributions.IntDistribution) else pa.float64()
             for k, d in space.items()}
    schema = pa.schema([("trial_id", pa.string()), *types.items(), ("best_val_f1", pa.float64()),
                        ("best_epoch", pa.int64()), ("epochs", pa.int64()), ("wall_s", pa.float64()),
                        ("checkpoint", pa.string()), ("status", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


def best_row(table: pa.Table) -> dict[str, Any]:
    """The trial with the highest ``best_val_f1`` (the earliest on ties).

    Raises:
        RuntimeError: when no trial reported a validation F1.
    """
    rows = [r for r in table.to_pylist() if r["best_val_f1"] is not None]
    if not rows:
        raise RuntimeError("sweep: no trial reported a validation F1 (see the trials' errors in the Ray logs)")
    return max(rows, key=lambda r: r["best_val_f1"])  # max keeps the first of equal rows


def defaults_trial(table: pa.Table, point: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The row of the first trial that ran ``point`` (search-space keys, as
    :func:`dpr_dist.tune.space.default_point` gives them), or None."""
    for row in table.to_pylist() if point else []:
        if all(row.get(column(k)) is not None and math.isclose(row[column(k)], v, rel_tol=1e-9)
               for k, v in point.items()):
            return row
    return None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4):
            return f"{value:.3g}"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.4f}"
    return str(value)


def to_markdown(table: pa.Table) -> str:
    """The results table as Markdown, best trial first (the ``checkpoint`` column left out)."""
    names = [n for n in table.column_names if n != "checkpoint"]
    rows = sorted(table.to_pylist(), key=lambda r: -(r["best_val_f1"] if r["best_val_f1"] is not None else -1.0))
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_fmt(r[n]) for n in names) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def build_study(table: pa.Table, space: Space) -> optuna.Study:
    """An Optuna study (maximize) holding every trial that reported, in order, with its best
    F1; parameters are named by their table columns (``data.threshold``, ...)."""
    study = optuna.create_study(direction="maximize")
    distributions = {column(k): d for k, d in space.items()}
    for r in table.to_pylist():
        if r["best_val_f1"] is None:
            continue
        study.add_trial(optuna.trial.create_trial(
            params={k: r[k] for k in distributions}, distributions=distributions, value=r["best_val_f1"],
            user_attrs={"trial_id": r["trial_id"], "status": r["status"], "epochs": r["epochs"]}))
    return study


def importances(study: optuna.Study, seed: int) -> dict[str, float] | None:
    """fANOVA importances (seeded) of the study's parameters; None with fewer than 2 trials."""
    if len(study.trials) < 2:
        return None
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return {column(k): float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}


def _write_bytes(data: bytes, uri: str) -> None:
    fs, path = io.filesystem(uri)
    if not io.is_s3(uri):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with fs.open_output_stream(path) as fh:
        fh.write(data)


def _png(ax) -> bytes:
    import matplotlib.pyplot as plt

    fig = ax.figure
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def write_report(table: pa.Table, space: Space, root: str, *, seed: int) -> dict[str, Any]:
    """Write the table (Parquet, Markdown) and the plots under ``root``; returns their URIs
    (``importance_png`` None when fewer than 2 trials reported) and the importances."""
    from optuna.visualization import matplotlib as ovm

    out = {"results": io.join(root, "results.parquet"), "results_md": io.join(root, "results.md"),
           "history_png": io.join(root, "history.png"), "importance_png": None}
    io.write_table(table, out["results"])
    _write_bytes(to_markdown(table).encode(), out["results_md"])
    study = build_study(table, space)
    imp = importances(study, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        _write_bytes(_png(ovm.plot_optimization_history(study, target_name="best validation F1")),
                     out["history_png"])
        if imp is not None:
            out["importance_png"] = io.join(root, "importance.png")
            ax = ovm.plot_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed),
                                            target_name="best validation F1")
            _write_bytes(_png(ax), out["importance_png"])
    io.write_json(imp or {}, io.join(root, "importance.json"))
    return {**out, "importance": imp}


def exported_test(out: str, trial: Mapping[str, Any]) -> dict[str, Any] | None:
    """The test metrics of ``out`` if it holds the export of ``trial`` (a row of
    :func:`results_table`) at its current best validation F1, else None (an interrupted
    trial may have improved since it was exported)."""
    uri = io.join(out, "metrics.json")
    if not io.exists(uri):
        return None
    done = io.read_json(uri)
    same = (done.get("sweep", {}).get("trial_id"), done.get("best_val_f1")) == (trial["trial_id"],
                                                                                 trial["best_val_f1"])
    return done.get("test") if same else None


def export_best(out: str, *, cfg: Config, trial: Mapping[str, Any], s3: bool, prep, ncf, index, top_k: int,
                ncf_uri: str) -> dict[str, Any]:
    """Write the best trial's model directory to ``out`` and evaluate it on the test split.

    Args:
        out: Destination (``<sweep>/best``).
        cfg: The best trial's configuration (:func:`dpr_dist.tune.sweep.trial_config`).
        trial: Its row of :func:`results_table`.
        s3: Whether the sweep (and so the checkpoint path) is on S3.
        prep, ncf, index, top_k, ncf_uri: Prepared data, the shared pre-trained NCF, its
            candidate index of the training patients, NCF's ``K`` and the NCF checkpoint.

    Returns:
        The test metrics (also stored as ``test`` in ``metrics.json``).
    """
    ckpt = trial["checkpoint"]
    if not ckpt:
        raise RuntimeError(f"sweep: trial {trial['trial_id']} reported no checkpoint")
    uri = f"s3://{ckpt}" if s3 and not ckpt.startswith("s3://") else ckpt
    fs, path = io.filesystem(io.join(uri, "model.pt"))
    with fs.open_input_file(path) as fh:
        state = torch.load(fh, map_location="cpu", weights_only=True)
    model = DPR(cfg.model, prep.num_drugs, prep.num_doc_words, NOTE_VOCAB_SIZE, cfg.model.name)
    model.load_state_dict(state)
    model.eval()
    info = io.read_json(io.join(uri, "state.json"))
    params = {k: trial[k] for k in trial if "." in k}
    metrics = {"sweep": {"trial_id": trial["trial_id"], "params": params, "epochs": trial["epochs"]},
               "pretrain": {"checkpoint": ncf_uri}, "best_epoch": info["best_epoch"],
               "best_val_f1": info["best_val_f1"], "history": info["history"], "checkpoint": uri}
    save_model_dir(out, cfg=cfg, model_name=cfg.model.name, ncf=ncf, model=model, index=index, drugs=prep.drugs,
                   doc_words=prep.doc_words, relation=prep.relation, cooc=prep.cooc, manifest=prep.manifest,
                   metrics=metrics, top_k=top_k)
    test, _ = evaluate(load_model_dir(out), read_records(prep.path, "test"))
    update_metrics(out, {"test": test})
    log.info("best trial %s (val F1 %.4f) -> %s; test F1 %.4f", trial["trial_id"], trial["best_val_f1"], out,
             test["f1"])
    return test
