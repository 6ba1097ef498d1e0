"""Patients/s of batch scoring (``dpr score`` on Ray Data) next to the same model in a plain loop.

The model directory is the paper-scale one of ``benchmarks/serve.py`` (random weights,
about 127,000 training patients in the candidate index); the backlog is ``--patients``
random patients in the EMR contract, written as Parquet.

* ``plain loop``: one process, no Ray: for each shard, the same reading and the same
  :class:`~dpr_dist.score.batch.BacklogScorer` call as the actors make, in a loop;
* ``Ray Data``: :func:`~dpr_dist.score.batch.score_backlog` with ``--actors`` actors,
  everything included (planning, actor start-up, commits).

    python benchmarks/batch_score.py --patients 20000 --actors 1                       # paper scale
    python benchmarks/batch_score.py --train-patients 5000 --patients 2000 --rows-per-shard 500  # a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

# benchmarks/serve.py
from serve import N_TRAIN, default_model_dir, paper_scale_model_dir, random_patients  # noqa: E402

from dpr_dist.data.io import filesystem  # noqa: E402
from dpr_dist.score.batch import BacklogScorer, plan_shards, read_shards, score_backlog  # noqa: E402
from dpr_dist.serve.inputs import PATIENT_SCHEMA  # noqa: E402


def write_backlog(path: str, n: int, files: int = 4) -> None:
    rows = random_patients(n, seed=7)
    per = -(-n // files)
    for f in range(files):
        part = rows[f * per: (f + 1) * per]
        pq.write_table(pa.Table.from_pylist(part, schema=PATIENT_SCHEMA), os.path.join(path, f"part-{f}.parquet"),
                       row_group_size=1024)


def plain_loop(model_dir: str, backlog: str, rows_per_shard: int, batch_size: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    scorer = BacklogScorer(model_dir, [])
    fs, _ = filesystem(backlog)
    n = 0
    for s in plan_shards(backlog, rows_per_shard):
        rows = read_shards(pa.table({"shard": [s.id]}), {s.id: (s.file, list(s.row_groups), s.first_row)}, fs)
        for start in range(0, rows.num_rows, batch_size):
            n += scorer(rows.slice(start, batch_size)).num_rows
    return n, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", help="where the model directory is built, reused when present "
                                       "(default: runs/bench/serve-model-N, shared with benchmarks/serve.py)")
    p.add_argument("--train-patients", type=int, default=N_TRAIN,
                   help=f"training patients in the candidate index (default {N_TRAIN:,}, paper scale)")
    p.add_argument("--patients", type=int, default=20000, help="patients in the backlog")
    p.add_argument("--actors", type=int, default=1, help="scoring actors of the Ray Data job")
    p.add_argument("--rows-per-shard", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=512, help="patients per model call (both runners)")
    args = p.parse_args()
    model_dir = paper_scale_model_dir(args.model_dir or default_model_dir(args.train_patients),
                                      n_train=args.train_patients)
    with tempfile.TemporaryDirectory(prefix="dpr-bench-score-") as tmp:
        backlog, out = os.path.join(tmp, "backlog"), os.path.join(tmp, "out")
        os.makedirs(backlog)
        write_backlog(backlog, args.patients)
        n_plain, t_plain = plain_loop(model_dir, backlog, args.rows_per_shard, args.batch_size)
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            t0 = time.perf_counter()
            summary = score_backlog(model_dir, backlog, out, num_actors=args.actors, rows_per_shard=args.rows_per_shard,
                                    batch_size=args.batch_size)
            t_ray = time.perf_counter() - t0
        finally:
            ray.shutdown()
    assert summary["read"] == summary["scored"] == n_plain == args.patients, (summary, n_plain)
    print(f"\nbatch scoring of {args.patients} patients, {args.train_patients:,} training patients in the index, "
          f"random weights, {os.cpu_count()} cores")
    print(f"{'runner':<34}{'seconds':>9}{'patients/s':>12}")
    print(f"{'plain loop (1 process, no Ray)':<34}{t_plain:>9.1f}{n_plain / t_plain:>12.0f}")
    print(f"{f'Ray Data, {args.actors} actor(s), all included':<34}{t_ray:>9.1f}{args.patients / t_ray:>12.0f}")
    print(f"Ray Data / plain: {(args.patients / t_ray) / (n_plain / t_plain):.2f}x")


if __name__ == "__main__":
    main()
