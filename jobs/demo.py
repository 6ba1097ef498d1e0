"""``make demo``: DPR-AG on synthetic data, with NCF and popularity for comparison.

``python jobs/demo.py [--config configs/demo.yaml] [--set k=v ...]``: generates the
synthetic EMR when absent, prepares it, pre-trains NCF, trains DPR-AG on a local Ray
(2 workers) and prints a table of test metrics. A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import dpr_dist  # noqa: F401
except ImportError:  # a checkout or a Ray job working directory without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpr_dist.runtime import setup_logging  # noqa: E402
from dpr_dist.train.job import job_config, run_job  # noqa: E402

if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    cfg = job_config(__doc__.splitlines()[0], default_config=str(root / "configs" / "demo.yaml"))
    setup_logging()
    run_job(cfg, models=["ag"], baselines=["ncf", "popularity"])
