"""Wall time of training several runs one after another against ``train.parallel_runs`` at once.

``dpr pipeline`` and ``dpr experiment`` train independent runs (one per model, setting and
seed); :func:`dpr_dist.train.parallel.train_runs` keeps ``P`` of them in flight, each its own
Ray Train run. This script trains the same runs (the package models of Table 4, from one
NCF pre-training) with ``P = 1`` and each ``P`` of ``--parallel``, alternating, each
repetition in fresh run directories (nothing reused), and prints the wall time of each
setting with its ratio to ``P = 1`` measured in the same run.

On a cluster the gain is the number of worker groups it holds at once. On one small machine
it is what overlapping runs recovers: a short run is mostly start-up (its controller, worker
and data-split processes start, import PyTorch, and wait on polls), which a second run can
fill.

    python benchmarks/parallel_runs.py                       # tiny runs, P = 1 vs 2
    python benchmarks/parallel_runs.py --records 4000 --epochs 2 --parallel 2,4 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import ensure_prepared  # noqa: E402
from dpr_dist.config import load_config  # noqa: E402
from dpr_dist.runtime import ensure_ray  # noqa: E402
from dpr_dist.train.parallel import RunRequest, train_runs  # noqa: E402
from dpr_dist.train.run import pretrain  # noqa: E402

MODELS = ("package2vec", "lda", "br", "dam", "gnn", "wg", "ag")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=os.path.join(REPO, "configs", "tiny.yaml"))
    p.add_argument("--records", type=int, default=400)
    p.add_argument("--drugs", type=int, default=40)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers per run (default 1)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--parallel", default="2", help="comma-separated P to compare with P = 1 (default 2)")
    p.add_argument("--repeats", type=int, default=1, help="alternating repetitions of every setting")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "dpr-bench"))
    args = p.parse_args(argv)

    models = [m for m in args.models.split(",") if m]
    settings = [1, *(int(x) for x in args.parallel.split(",") if int(x) != 1)]
    cfg = load_config(args.config, [f"train.epochs={args.epochs}", "train.pretrain_epochs=1",
                                    f"train.num_workers={args.workers}"])
    ensure_ray(args.num_cpus)
    prepared = ensure_prepared(cfg, args.workdir, args.records, args.drugs)
    root = os.path.join(args.workdir, "parallel-runs")
    shutil.rmtree(root, ignore_errors=True)
    cfg = replace(cfg, data=replace(cfg.data, prepared=prepared),
                  train=replace(cfg.train, storage_path=os.path.join(root, "ncf"), name="bench"))
    pretrain(cfg)
    ncf = os.path.join(root, "ncf", "bench-ncf")
    times: dict[int, list[float]] = {p_: [] for p_ in settings}
    for rep in range(args.repeats):
        for p_ in settings:
            run_cfg = replace(cfg, train=replace(cfg.train, storage_path=os.path.join(root, f"r{rep}-p{p_}")))
            t0 = time.perf_counter()
            train_runs([RunRequest(run_cfg, m, pretrained=ncf) for m in models], p_)
            times[p_].append(time.perf_counter() - t0)
            print(f"repeat {rep}: P = {p_}: {times[p_][-1]:.1f} s", flush=True)

    base = sum(times[1]) / len(times[1])
    print(f"\n{len(models)} runs ({','.join(models)}), {args.records} records, {args.epochs} epoch(s), "
          f"{args.workers} worker(s) per run, {args.repeats} repeat(s), {os.cpu_count()} CPUs")
    print(f"{'P':>3} {'wall s (mean)':>14} {'runs/min':>9} {'speed-up vs P=1':>16}")
    for p_ in settings:
        mean = sum(times[p_]) / len(times[p_])
        print(f"{p_:>3} {mean:>14.1f} {60 * len(models) / mean:>9.2f} {base / mean:>15.2f}x")


if __name__ == "__main__":
    main()
