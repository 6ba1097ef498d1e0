"""Training throughput of DPR: the straightforward reference, the fast path, and Ray Train.

Prints patients/s (records per second of a training step: collating the batch, sampling
the negatives and building their graphs as the trainer does, forward, backward and the
Adam step) for DPR-WG and DPR-AG at the paper's dimensions (``configs/paper.yaml``: batch
256, negative ratio 10), in one run on the same machine:

* the reference loop (``model.fast = False``: the straightforward code),
* the fast loop (``model.fast = True``: :mod:`dpr_dist.models.fast`),
* the fast path inside Ray Train (``dpr_dist.train.run.fit``, the ``TorchTrainer`` the
  training job uses) with 1 worker (all threads) and 2 workers (one thread each).

Data: paper-scale synthetic records (``synth.generate(158556, 1428)`` + ``prepare``),
generated once into ``--workdir``; the plain loops time ``--steps`` steps (after
``--warmup``) on the first training records. Ray Train rows run two epochs of
``--ray-steps`` steps and report the second (the first warms up the workers); an epoch's
time includes starting its data iterator, as in training, where ~500 steps amortize it.

    python benchmarks/train.py --steps 5
    python benchmarks/train.py --steps 3 --models wg --no-ray
    python benchmarks/train.py --metrics      # validation metrics of both paths, tiny data

Set ``DPR_FAST_COMPILE=1`` to run the fast path's per-edge kernels ``torch.compile``'d
(:mod:`dpr_dist.models.fast_kernels`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dpr_dist.config import Config, load_config  # noqa: E402
from dpr_dist.data.documents import NOTE_VOCAB_SIZE  # noqa: E402
from dpr_dist.models.dpr import DPR  # noqa: E402
from dpr_dist.models.layers import l2_penalty  # noqa: E402
from dpr_dist.train.collate import PATIENT_COLUMNS, RECORD_COLUMNS, collate_packages, collate_patients  # noqa: E402
from dpr_dist.train.negatives import gather_packages, negative_layout, sample_negative_packages  # noqa: E402
from dpr_dist.train.prepared import load_prepared, read_records  # noqa: E402

from _common import ensure_prepared  # noqa: E402  (benchmarks/_common.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_step(model: DPR, opt: torch.optim.Optimizer, table: pa.Table, cfg: Config, num_doc_words: int,
               rng: np.random.Generator, amp: bool = False) -> float:
    """One training step as the trainer takes it (one rank); returns the loss.

    ``amp``: the forward pass under ``torch.autocast`` (bfloat16 on the CPU).
    """
    k = cfg.train.negative_ratio
    patients = collate_patients(table, num_doc_words)
    own = collate_packages(table, cfg.data.threshold, model.num_drugs)
    glob = gather_packages(own, 0)
    neg = sample_negative_packages(glob.packages.keys(), glob.own(), k, rng)
    graphs = glob.packages.take(negative_layout(glob.own(), neg)).to_batch()
    owner = torch.arange(len(own)).repeat_interleave(1 + k)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        loss, _ = model(patients, graphs, owner, k)
    loss = loss + cfg.train.l2 * l2_penalty(model.parameters())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def plain_loop(cfg: Config, kind: str, fast: bool, table: pa.Table, num_drugs: int, num_doc_words: int,
               warmup: int, steps: int) -> tuple[float, list[float]]:
    """Patients/s of ``steps`` timed steps (after ``warmup``) and the losses of all steps."""
    torch.manual_seed(cfg.train.seed)
    model = DPR(replace(cfg.model, fast=fast), num_drugs, num_doc_words, NOTE_VOCAB_SIZE, kind)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    b = cfg.train.batch_size
    losses, seconds = [], 0.0
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        losses.append(train_step(model, opt, table.slice(step * b, b), cfg, num_doc_words,
                                 np.random.default_rng([cfg.train.seed, step])))
        if step >= warmup:
            seconds += time.perf_counter() - t0
    return steps * b / seconds, losses


def subset_prepared(prepared: str, rows: int, out: str) -> str:
    """A prepared directory whose training split is the first ``rows`` records of ``prepared``."""
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "records", "split=train"))
    for name in ("manifest.json", "vocab", "relation.parquet", "cooccurrence.parquet"):
        os.symlink(os.path.join(prepared, name), os.path.join(out, name))
    train = read_records(prepared, "train", RECORD_COLUMNS).slice(0, rows)
    pq.write_table(train, os.path.join(out, "records", "split=train", "part-00000.parquet"))
    return out


def ray_train(cfg: Config, kind: str, prepared: str, workers: int, threads: int, workdir: str) -> float:
    """Patients/s of the second of two epochs of ``fit`` (fast path) over ``prepared``'s train split."""
    from dpr_dist.train.run import fit
    from dpr_dist.train.validation import ValidationData

    prep = load_prepared(prepared, cfg.data.threshold)
    cfg = replace(cfg, data=replace(cfg.data, prepared=prepared), model=replace(cfg.model, name=kind, fast=True),
                  train=replace(cfg.train, num_workers=workers, cpus_per_worker=max(1, threads // workers),
                                storage_path=os.path.join(workdir, "ray"),
                                name=f"bench-{kind}-{workers}w-{int(time.time())}", max_failures=0))
    val = ValidationData(read_records(prepared, "train", PATIENT_COLUMNS).slice(0, 0), None, 18,
                         prep.relation, prep.cooc)
    result = fit(cfg, kind, 2, val)
    return float(result.metrics["samples_per_s"])


def run_throughput(args: argparse.Namespace) -> None:
    cfg = load_config(args.config, args.set)
    torch.set_num_threads(args.threads)
    workdir = args.workdir or os.path.join(tempfile.gettempdir(), "dpr-bench")
    os.makedirs(workdir, exist_ok=True)
    if not args.prepared or not args.no_ray:
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=args.threads + 1, include_dashboard=False, log_to_driver=False)
    prepared = args.prepared or ensure_prepared(cfg, workdir, args.records, args.drugs)
    prep = load_prepared(prepared, cfg.data.threshold)
    b = cfg.train.batch_size
    rows = (args.warmup + args.steps) * b
    table = read_records(prepared, "train", RECORD_COLUMNS)
    if table.num_rows < max(rows, args.ray_steps * b):
        raise SystemExit(f"{prepared} has {table.num_rows} training records; --steps/--ray-steps need "
                         f"{max(rows, args.ray_steps * b)}")
    table = table.slice(0, rows)
    pkg = np.diff(table["drug_ids"].combine_chunks().offsets.to_numpy())
    print(f"data: {prepared} ({prep.num_drugs} drugs), first {rows} training records, "
          f"mean package {pkg.mean():.1f} drugs; batch {b}, negative ratio {cfg.train.negative_ratio}, "
          f"{args.threads} threads; load average {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    sizes = (prep.num_drugs, prep.num_doc_words, args.warmup, args.steps)
    for kind in args.models.split(","):
        ref, ref_losses = plain_loop(cfg, kind, False, table, *sizes)
        results.append((kind, "reference loop", ref))
        print(f"{kind}: reference loop {ref:.1f} patients/s", flush=True)
        fast, fast_losses = plain_loop(cfg, kind, True, table, *sizes)
        results.append((kind, "fast loop", fast))
        drift = max(abs(a - c) / abs(c) for a, c in zip(fast_losses, ref_losses))
        print(f"{kind}: fast loop {fast:.1f} patients/s; losses of both loops agree to {drift:.1e} (relative)",
              flush=True)
        if not args.no_ray:
            sub = subset_prepared(prepared, args.ray_steps * b, os.path.join(workdir, "subset"))
            for workers in (1, 2):
                sps = ray_train(cfg, kind, sub, workers, args.threads, workdir)
                results.append((kind, f"Ray Train, {workers} worker{'s' * (workers > 1)} (fast)", sps))
                print(f"{kind}: Ray Train {workers} worker(s) {sps:.1f} patients/s", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}\n")
    print(f"{'model':6} {'path':30} {'patients/s':>11} {'x reference':>12} {'x fast loop':>12}")
    for kind, path, sps in results:
        ref = next(v for k, p, v in results if k == kind and p == "reference loop")
        fast = next(v for k, p, v in results if k == kind and p == "fast loop")
        print(f"{kind:6} {path:30} {sps:11.1f} {sps / ref:12.2f} {sps / fast:12.2f}")


def run_metrics(args: argparse.Namespace) -> None:
    """Validation metrics of a fixed-seed plain-PyTorch run with each path, on tiny data."""
    import ray

    from dpr_dist.eval.candidates import CandidateIndex
    from dpr_dist.eval.evaluate import pick_packages
    from dpr_dist.eval.metrics import package_prf
    from dpr_dist.train.collate import package_csr

    cfg = load_config(os.path.join(REPO, "configs", "tiny.yaml"), args.set)
    torch.set_num_threads(args.threads)
    workdir = args.workdir or os.path.join(tempfile.gettempdir(), "dpr-bench")
    if not ray.is_initialized():
        ray.init(num_cpus=args.threads, include_dashboard=False, log_to_driver=False)
    prepared = args.prepared or ensure_prepared(cfg, workdir, cfg.synth.records, cfg.synth.drugs)
    prep = load_prepared(prepared, cfg.data.threshold)
    train = read_records(prepared, "train", RECORD_COLUMNS)
    val = read_records(prepared, "val", RECORD_COLUMNS)
    docs = [collate_patients(t, prep.num_doc_words).doc for t in (train, val)]  # fixed candidates
    index = CandidateIndex(docs[0], package_csr(train))
    cands = index.query(docs[1], k=cfg.eval.neighbors)
    out = {}
    paths = {"reference": (False, False), "fast": (True, False), "fast + bf16 autocast": (True, True)}
    for kind in args.models.split(","):
        for path, (fast, amp) in paths.items():
            torch.manual_seed(cfg.train.seed)
            model = DPR(replace(cfg.model, fast=fast), prep.num_drugs, prep.num_doc_words, NOTE_VOCAB_SIZE, kind)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
            b = cfg.train.batch_size
            for epoch in range(cfg.train.epochs):
                order = np.random.default_rng([cfg.train.seed, epoch]).permutation(train.num_rows)
                for step, start in enumerate(range(0, train.num_rows - b + 1, b)):
                    train_step(model, opt, train.take(order[start: start + b]), cfg, prep.num_doc_words,
                               np.random.default_rng([cfg.train.seed, epoch, step]), amp)
            model.eval()
            with torch.no_grad():
                u = model.encode(collate_patients(val, prep.num_doc_words))
                preds = pick_packages(model, u, cands, prep.relation, prep.cooc, cfg.data.threshold)
            prf = package_prf(preds, package_csr(val))
            out[(kind, path)] = {m: float(np.mean(prf[m])) for m in ("precision", "recall", "f1")}
            print(f"{kind} {path}: {json.dumps(out[(kind, path)])}", flush=True)
    print(f"\n{train.num_rows} training / {val.num_rows} validation records, {cfg.train.epochs} epochs, "
          f"validation candidates: the {cfg.eval.neighbors} training patients of most similar disease documents")
    print(f"{'model':6} {'path':22} {'precision':>10} {'recall':>10} {'f1':>10}")
    for (kind, path), m in out.items():
        print(f"{kind:6} {path:22} {m['precision']:10.4f} {m['recall']:10.4f} {m['f1']:10.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=os.path.join(REPO, "configs", "paper.yaml"))
    ap.add_argument("--set", action="append", default=[], help="config override section.key=value")
    ap.add_argument("--records", type=int, default=158_556)
    ap.add_argument("--drugs", type=int, default=1_428)
    ap.add_argument("--prepared", default=None, help="use this prepared directory instead of generating")
    ap.add_argument("--workdir", default=None, help="where data and Ray runs go (default: $TMPDIR/dpr-bench)")
    ap.add_argument("--models", default="wg,ag")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per row")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    ap.add_argument("--ray-steps", type=int, default=20,
                    help="steps per epoch of the Ray Train rows (the epoch's start-up is amortized over them)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true", help="plain loops only")
    ap.add_argument("--metrics", action="store_true", help="validation metrics of both paths (tiny data)")
    args = ap.parse_args()
    (run_metrics if args.metrics else run_throughput)(args)


if __name__ == "__main__":
    main()
