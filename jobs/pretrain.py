"""Pre-train NCF (paper 4.1) on Ray Train: ``python jobs/pretrain.py [--config FILE] [--set k=v ...]``.

Generates synthetic data and prepares it when the configured paths are absent; prints the
best checkpoint's URI.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import dpr_dist  # noqa: F401
except ImportError:  # a checkout or a Ray job working directory without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpr_dist.runtime import setup_logging  # noqa: E402
from dpr_dist.train.job import ensure_data, job_config  # noqa: E402
from dpr_dist.train.run import pretrain  # noqa: E402

if __name__ == "__main__":
    cfg = job_config(__doc__.splitlines()[0])
    setup_logging()
    ensure_data(cfg)
    print(pretrain(cfg))
