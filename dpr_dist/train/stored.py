"""A Ray Train run as it is stored (local or ``s3://``), read back without running it.

* :func:`stored_run` -- the run's ``ray.train.Result`` from Ray Train's checkpoint-manager
  snapshot: its checkpoints (the best ones by the run's ``CheckpointConfig`` and the
  latest) and their metrics;
* :func:`checkpoint_state` -- the progress the workers keep in a checkpoint
  (``state.json``: next epoch, best validation F1 and its epoch, per-epoch history);
* :func:`stopped_early` -- whether that progress means the run stopped early
  (``train.patience``).

:func:`dpr_dist.train.run.fit` uses them to return a run that has finished its epochs
without starting its workers again; the sweep report reads its trials' runs with them
(:func:`dpr_dist.tune.report.train_run_summary`).
"""

from __future__ import annotations

import logging

from dpr_dist.data import io


def stored_run(uri: str):
    """The ``ray.train.Result`` of the Ray Train run stored at ``uri`` (local or ``s3://``),
    read from Ray Train's checkpoint-manager snapshot (``ray.train.Result.from_path``), or
    None when the run has saved no checkpoint yet."""
    import ray.train

    if not io.exists(io.join(uri, "checkpoint_manager_snapshot.json")):
        return None
    path, fs = io.ray_storage(uri)
    quiet = logging.getLogger("ray.train")  # its "a run snapshot was found" is expected here
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        run = ray.train.Result.from_path(path, storage_filesystem=fs)
    finally:
        quiet.setLevel(level)
    return run if run.checkpoint is not None else None


def checkpoint_state(uri: str, checkpoint) -> dict:
    """The ``state.json`` (progress, history) of a checkpoint of the run stored at ``uri``."""
    path = checkpoint.path
    return io.read_json(io.join(f"s3://{path}" if io.is_s3(uri) and not io.is_s3(path) else path, "state.json"))


def stopped_early(next_epoch: int, best_epoch: int, patience: int) -> bool:
    """Whether a run whose next epoch is ``next_epoch`` has stopped early: its last
    ``patience`` epochs did not raise the best validation F1 (``train.patience``; 0: never).

    Computed from the checkpointed progress, so a resumed or re-run run agrees with the
    uninterrupted one, and a larger ``patience`` or ``epochs`` lets a stopped run go on.
    """
    return patience > 0 and next_epoch - 1 - best_epoch >= patience
