"""Serve a model directory with Ray Serve: ``python jobs/serve.py [--model-dir DIR] [--config FILE] [--set k=v ...]``.

Joins the cluster at ``RAY_ADDRESS`` (or starts a local Ray), deploys the application of
:mod:`dpr_dist.serve.app` on ``serve.host:serve.port`` and serves until interrupted.
``--reload DIR`` instead points an application already running (deployed with the same
config) at another model directory, in place (``user_config``), and exits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import dpr_dist  # noqa: F401
except ImportError:  # a checkout or a Ray job working directory without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpr_dist.config import load_config  # noqa: E402
from dpr_dist.runtime import setup_logging  # noqa: E402
from dpr_dist.serve.deploy import reload_model, run_service  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", metavar="FILE", help="YAML config (default: built-in defaults)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config value, e.g. --set serve.port=8080 (repeatable)")
    p.add_argument("--model-dir", help="model directory, local or s3:// (default: serve.model_dir)")
    p.add_argument("--reload", metavar="DIR", help="point the running application at another model directory")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica")
    p.add_argument("--device", help="cuda to run the models on a GPU (one per replica)")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse()
    cfg = load_config(args.config, args.overrides)
    setup_logging()
    if args.reload:
        reload_model(cfg, args.reload, num_cpus=args.num_cpus, device=args.device)
        print(f"reloaded {args.reload}")
    else:
        run_service(cfg, model_dir=args.model_dir, num_cpus=args.num_cpus, device=args.device, blocking=True)
