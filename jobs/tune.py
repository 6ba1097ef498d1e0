"""Sweep a DPR model's hyperparameters: ``python jobs/tune.py [--config FILE] [--set k=v ...]``.

Ray Tune + Optuna (seeded TPE) + ASHA; every trial is a distributed Ray Train run of
``model.name`` (``--set model.name=wg`` for another variant) sharing one NCF pre-training.
Generates synthetic data and prepares it when the configured paths are absent. Writes
``<tune.storage_path or train.storage_path>/<tune.name>/`` (results table, plots, the best
model directory ``best/``) and prints a JSON summary; re-run with the same ``tune.name``
to resume. On a cluster: ``ray job submit --working-dir . -- python jobs/tune.py --config FILE``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

try:
    import dpr_dist  # noqa: F401
except ImportError:  # a checkout or a Ray job working directory without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpr_dist.runtime import setup_logging  # noqa: E402
from dpr_dist.train.job import ensure_data, job_config  # noqa: E402
from dpr_dist.tune import run_sweep  # noqa: E402

if __name__ == "__main__":
    cfg = job_config(__doc__.splitlines()[0])
    setup_logging()
    ensure_data(cfg)
    print(json.dumps(run_sweep(cfg), indent=2, default=str))
