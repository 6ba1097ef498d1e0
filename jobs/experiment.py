"""Run the paper's experiments (Tables 4-8, Figures 6-8, package generation) as one Ray job.

``python jobs/experiment.py --out DIR [--which table4,fig6,...] [--seeds 0,1,2] [--config FILE]
[--set k=v ...]``; on a cluster: ``ray job submit --working-dir . -- python
jobs/experiment.py --config configs/bench.yaml --out s3://bucket/experiments --parallel-runs 8``
(eight runs training at once, each its own worker group). Writes
``DIR/report/report.md`` with the Markdown tables and PNG plots next to it; every run
lives under ``DIR/runs`` and a re-run reuses the finished ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import dpr_dist  # noqa: F401
except ImportError:  # a checkout or a Ray job working directory without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpr_dist.cli_parser import parallel_runs_arg  # noqa: E402
from dpr_dist.config import load_config  # noqa: E402
from dpr_dist.eval.experiment_options import add_arguments, options_from_args  # noqa: E402
from dpr_dist.eval.experiments import run_experiments  # noqa: E402
from dpr_dist.runtime import setup_logging  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", metavar="FILE", help="YAML config (default: built-in defaults)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    add_arguments(p)
    parallel_runs_arg(p)
    args = p.parse_args(argv)
    parallel = [] if args.parallel_runs is None else [f"train.parallel_runs={args.parallel_runs}"]
    cfg = load_config(args.config, [*args.overrides, *parallel])
    setup_logging()
    result = run_experiments(cfg, args.out, args.which, options_from_args(args), emr=args.emr, ddi=args.ddi)
    print(result["report"])
    return result


if __name__ == "__main__":
    main()
