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
    """
    import ray

    if ray.is_initialized():
        return
    kwargs = {"log_to_driver": True, "include_dashboard": False}
    if not os.environ.get("RAY_ADDRESS") and num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)


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
