"""Starting or joining Ray, and small run-time helpers shared by the stages."""

from __future__ import annotations

import logging
import os
import random

import numpy as np

log = logging.getLogger("dpr_dist")


def ensure_ray(num_cpus: int | None = None) -> None:
    """Join the cluster at ``RAY_ADDRESS`` if set, else start a local Ray on demand.

    A no-op when Ray is already initialized (tests share one session cluster).

    A local Ray starts with its dashboard (on loopback, port 8265 or the next free one): it
    serves Ray's state API, which Ray Train's ``PlacementGroupCleaner`` asks once a second
    whether a run's controller is alive, so that a dead controller's placement group is freed.
    Without it that cleaner warns every second of every run and never frees anything. The
    cleaner finds the state API from ``RAY_ADDRESS``, or by looking for *the* Ray on the
    machine, which fails where two local Rays run (two ``dpr`` commands at once); so the
    workers of a local Ray get their own cluster's address (:func:`_point_at_own_cluster`).
    """
    import ray

    if ray.is_initialized():
        return
    kwargs = {"log_to_driver": True, "include_dashboard": True, "dashboard_host": "127.0.0.1"}
    if not os.environ.get("RAY_ADDRESS"):
        kwargs["runtime_env"] = {"worker_process_setup_hook": "dpr_dist.runtime._point_at_own_cluster"}
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)


def _point_at_own_cluster() -> None:
    """``worker_process_setup_hook`` of a local Ray: sets ``RAY_ADDRESS`` in each worker to
    the worker's own cluster, where Ray's state API clients look first."""
    import ray

    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
