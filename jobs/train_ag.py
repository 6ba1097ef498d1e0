"""Train DPR-AG (attributed graphs) end to end: ``python jobs/train_ag.py [--config FILE] [--set k=v ...]``.

With no arguments: the embedded default configuration on a local Ray (synthetic data
generated and prepared when absent, NCF pre-training, training, test metrics). On a
cluster: ``ray job submit --working-dir . -- python jobs/train_ag.py --config FILE``.
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
    cfg = job_config(__doc__.splitlines()[0])
    setup_logging()
    run_job(cfg, models=["ag"])
