"""Score a backlog of patients on Ray Data: ``python jobs/batch_score.py --model-dir DIR --input URI --out URI``.

Recommends one package per patient (Parquet in the EMR contract, ``drugs`` not needed;
local or ``s3://``) with an actor pool holding the model, writes
``OUT/results/shard-*.parquet`` and ``OUT/rejects/shard-*.parquet``, and resumes where a
previous run stopped. Prints the summary (read = scored + rejected) as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import dpr_dist  # noqa: F401
except ImportError:  # a checkout or a Ray job working directory without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpr_dist.cli_parser import rank_by_args  # noqa: E402
from dpr_dist.runtime import setup_logging  # noqa: E402
from dpr_dist.score.batch import score_backlog  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True, help="model directory (local or s3://)")
    p.add_argument("--input", required=True, help="backlog: Parquet file or directory (local or s3://)")
    p.add_argument("--out", required=True, help="output directory (local or s3://); re-run to resume")
    p.add_argument("--num-actors", type=int, default=1, help="scoring actors (each holds the model)")
    p.add_argument("--rows-per-shard", type=int, default=4096, help="shard size of a new run")
    p.add_argument("--batch-size", type=int, default=512, help="patients per model call")
    p.add_argument("--num-gpus", type=float, help="GPUs per actor (default: 1 if the cluster has GPUs)")
    rank_by_args(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse()
    setup_logging()
    summary = score_backlog(args.model_dir, args.input, args.out, num_actors=args.num_actors,
                            rows_per_shard=args.rows_per_shard, batch_size=args.batch_size, num_gpus=args.num_gpus,
                            rank_by=args.rank_by, temperature=args.temperature)
    print(json.dumps(summary, indent=2))
