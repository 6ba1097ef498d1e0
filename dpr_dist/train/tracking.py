"""Experiment tracking of the Ray Train runs: TensorBoard and MLflow, as Ray Train callbacks.

Set ``train.tensorboard_dir`` and/or ``train.mlflow_uri`` (both off by default) and every
Ray Train run (``dpr pretrain``, ``dpr train``, ``dpr pipeline``, ``dpr experiment``, the
trials of ``dpr tune``) logs each epoch's report: ``loss``, ``val_f1``, ``best_val_f1``,
``samples_per_s``, ``epoch_s``, ``gather_bytes_per_step``, the ranking-term figures, with
the epoch as the step.

Both loggers are ``ray.train.UserCallback``s passed to ``RunConfig(callbacks=...)``
(:func:`tracking_callbacks`): Ray Train calls them in its controller process after every
report, with the metrics of every rank; rank 0's are logged (every rank reports the same
numbers, :mod:`dpr_dist.train.worker`). Nothing runs on the workers' hot path.

* TensorBoard (:class:`TensorBoardLogger`): event files under
  ``{tensorboard_dir}/{run name}`` (tensorboardX, one file per epoch's report, written
  before the report returns), one TensorBoard run per Ray Train run
  (``bench-ncf``, ``bench-ag``, a trial's ``<trial id>-ag``); a resumed run appends to it.
  The directory is a path on the controller's node, which Ray Train places on the
  driver's (``tensorboard --logdir DIR`` there, or a shared file system).
* MLflow (:class:`MLflowLogger`): one MLflow run per Ray Train run (or resumed part of
  one) in the experiment ``train.mlflow_experiment``, named after the Ray Train run, with
  the whole configuration as parameters; marked finished after its last epoch. A sweep's
  trials get Ray Tune's ``MLflowLoggerCallback`` instead (:func:`sweep_callbacks`). Any
  tracking URI MLflow accepts (``http://mlflow:5000``, ``sqlite:///path/mlflow.db``).
  Needs ``mlflow`` (``pip install -e '.[dev]'`` brings ``mlflow-skinny``).
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from dataclasses import asdict
from typing import Any

from ray.train import UserCallback

from dpr_dist.config import Config
from dpr_dist.train.stored import stopped_early

#: MLflow accepts at most this many parameters per ``log_batch`` call.
MLFLOW_BATCH = 100


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite entries of a report (booleans and other values left out)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def flat_params(cfg: Config) -> dict[str, str]:
    """The configuration as ``{"section.key": str(value)}`` (MLflow parameters)."""
    out = {}
    for section, values in asdict(cfg).items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": str(v) for k, v in values.items()})
        else:
            out[section] = str(values)
    return out


class TensorBoardLogger(UserCallback):
    """Writes rank 0's report of every epoch as TensorBoard scalars.

    Args:
        logdir: ``train.tensorboard_dir`` (a local or shared path).
        run: The Ray Train run's name: the event files go to ``logdir/run``.
    """

    def __init__(self, logdir: str, run: str) -> None:
        self.path = os.path.join(logdir, run)

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:  # noqa: D102
        if not metrics:
            return
        from tensorboardX import SummaryWriter

        values = scalars(metrics[0])
        step = int(values.pop("epoch", 0))
        # one event file per report, closed at once: tensorboardX writes from a background
        # thread, and only close() waits for it, so the epoch is on disk when the report returns
        with SummaryWriter(self.path, filename_suffix=f".epoch{step}") as writer:
            for key, value in values.items():
                writer.add_scalar(key, value, step)


class MLflowLogger(UserCallback):
    """Logs rank 0's report of every epoch to an MLflow run.

    Args:
        uri: ``train.mlflow_uri``.
        experiment: ``train.mlflow_experiment`` (created when missing).
        run: The Ray Train run's name, the MLflow run's name and tag ``ray_train_run``.
        params: Logged once as the run's parameters (:func:`flat_params`).
        epochs: The run's epochs: the MLflow run is finished after epoch ``epochs - 1``.
        patience: ``train.patience``: the run is also finished after the epoch at which the
            workers stop early (:func:`~dpr_dist.train.stored.stopped_early`).
    """

    def __init__(self, uri: str, experiment: str, run: str, params: dict[str, str], epochs: int,
                 patience: int = 0) -> None:
        self.uri, self.experiment, self.run, self.params, self.epochs = uri, experiment, run, params, epochs
        self.patience = patience
        self._client = None
        self._run_id: str | None = None

    def _start(self):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.uri)
        found = self._client.get_experiment_by_name(self.experiment)
        exp_id = found.experiment_id if found is not None else self._client.create_experiment(self.experiment)
        self._run_id = self._client.create_run(exp_id, run_name=self.run,
                                               tags={"ray_train_run": self.run}).info.run_id
        params = [Param(k, v) for k, v in sorted(self.params.items())]
        for i in range(0, len(params), MLFLOW_BATCH):
            self._client.log_batch(self._run_id, params=params[i: i + MLFLOW_BATCH])

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:  # noqa: D102
        if not metrics:
            return
        from mlflow.entities import Metric

        if self._run_id is None:
            self._start()
        values = scalars(metrics[0])
        step = int(values.pop("epoch", 0))
        now = int(time.time() * 1000)
        self._client.log_batch(self._run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])
        best_epoch = int(metrics[0].get("best_epoch", step))
        if step + 1 >= self.epochs or stopped_early(step + 1, best_epoch, self.patience):
            self._client.set_terminated(self._run_id, status="FINISHED")


def _driver_path(uri: str) -> str:
    """A relative TensorBoard directory or ``sqlite:///`` file made absolute on the driver: the
    loggers run in the Ray Train controller, whose working directory may differ."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        return uri if os.path.isabs(path) else "sqlite:///" + os.path.abspath(path)
    return uri if "://" in uri else os.path.abspath(uri)


def _need_mlflow() -> None:
    if importlib.util.find_spec("mlflow") is None:
        raise ImportError("train.mlflow_uri is set but mlflow is not installed: pip install mlflow-skinny "
                          "(the project's dev extra has it)")


def tracking_callbacks(cfg: Config, run: str, epochs: int, mlflow: bool = True) -> list[UserCallback]:
    """The loggers ``cfg.train`` asks for, for the Ray Train run ``run`` of ``epochs`` epochs
    (relative paths resolved on the driver). ``mlflow=False`` leaves MLflow out (a sweep's
    trials: :func:`sweep_callbacks` logs them).

    Raises:
        ImportError: when ``train.mlflow_uri`` is set and ``mlflow`` is not installed
            (raised on the driver, before the run starts).
    """
    tc = cfg.train
    out: list[UserCallback] = []
    if tc.tensorboard_dir:
        out.append(TensorBoardLogger(_driver_path(tc.tensorboard_dir), run))
    if tc.mlflow_uri and mlflow:
        _need_mlflow()
        out.append(MLflowLogger(_driver_path(tc.mlflow_uri), tc.mlflow_experiment, run, flat_params(cfg), epochs,
                                 tc.patience))
    return out


def sweep_callbacks(cfg: Config) -> list:
    """The Tune callbacks of a sweep (``dpr tune``): with ``train.mlflow_uri``, Ray Tune's own
    ``MLflowLoggerCallback``, one MLflow run per trial with the trial's hyperparameters as
    parameters, its results as metrics, and its end (completed, stopped by ASHA, failed) as
    the run's status. The trials' Train runs then log to TensorBoard only."""
    if not cfg.train.mlflow_uri:
        return []
    _need_mlflow()
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return [MLflowLoggerCallback(tracking_uri=_driver_path(cfg.train.mlflow_uri),
                                 experiment_name=cfg.train.mlflow_experiment, save_artifact=False)]
