"""Test-set evaluation throughput: the library's batched evaluator next to a plain loop.

Prints records/s of the two stages of recommending for a test patient the way the paper
does (5.1.1), in one run on the same machine, single process:

* candidate retrieval: NCF patient embedding, cosine similarity to the training patients'
  embeddings, the top-``k`` neighbours, their packages without repeats;
* scoring: the package model's patient embedding, a score for every candidate package
  graph, the best-scoring package.

Two implementations of the same computation:

* ``library`` -- :func:`dpr_dist.eval.evaluate.encode_records` (chunks of
  ``--batch-size`` records), :meth:`CandidateIndex.query` (one matrix product and
  ``topk`` per block of queries) and :func:`dpr_dist.eval.evaluate.pick_packages` (all
  candidate graphs of ``--batch-size`` queries in one scoring call through the fast path);
* ``plain`` -- one record at a time in Python: encode the record alone, NumPy dot product
  with the normalized training embeddings, ``argsort``, drop repeated packages in a Python
  loop, build that record's candidate graphs and score them with the reference model code
  (``model.fast = False``), ``argmax``.

The library run also times the expected-F1 pick (``dpr evaluate --mbr``,
``serve.rank_by: expected_f1``) on the same scores: the extra cost of that decision rule
next to the scoring it follows.

The plain loop runs on the first ``--plain-records`` test records (it is slow); its
records/s are comparable per record. The run also reports how many of those records got the
same candidate set and the same pick from both (ties and float rounding may differ).

Data: synthetic records (``synth.generate`` + ``prepare``), generated once into
``--workdir`` (or any prepared data: ``--prepared``); the model weights are untrained
and seeded (throughput does not depend on their values) unless ``--model-dir`` names a
trained model directory (then ``--prepared`` defaults to the data it was trained on).

    python benchmarks/evaluate.py --records 3000 --drugs 120             # smoke run, tiny dims
    python benchmarks/evaluate.py --paper                                # 158,556 records, 1,428 drugs
    python benchmarks/evaluate.py --model-dir runs/x/model --prepared runs/x/prepared
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import numpy as np
import pyarrow as pa
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dpr_dist.config import Config, load_config  # noqa: E402
from dpr_dist.data.documents import NOTE_VOCAB_SIZE  # noqa: E402
from dpr_dist.eval.candidates import CandidateIndex  # noqa: E402
from dpr_dist.eval.evaluate import candidate_graphs, encode_records, score_candidates  # noqa: E402
from dpr_dist.eval.mbr import mbr_pick  # noqa: E402
from dpr_dist.eval.metrics import mean_package_size  # noqa: E402
from dpr_dist.eval.package_csr import PackageCSR  # noqa: E402
from dpr_dist.models.ncf import NCF  # noqa: E402
from dpr_dist.models.variants import build_model  # noqa: E402
from dpr_dist.train.collate import collate_patients, package_csr  # noqa: E402
from dpr_dist.train.modeldir import ModelBundle, load_model_dir  # noqa: E402
from dpr_dist.train.prepared import load_prepared, read_records  # noqa: E402

from _common import ensure_prepared  # noqa: E402  (benchmarks/_common.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def untrained_bundle(cfg: Config, prepared: str, model: str) -> ModelBundle:
    """A model directory in memory: seeded untrained NCF and package model, the candidate
    index of the training patients, the prepared data's tables."""
    prep = load_prepared(prepared, cfg.data.threshold)
    m, v = prep.num_drugs, prep.num_doc_words
    torch.manual_seed(cfg.seed)
    ncf = NCF(cfg.model, m, v, NOTE_VOCAB_SIZE).eval()
    net = build_model(replace(cfg.model, name=model), m, v, NOTE_VOCAB_SIZE)
    net.load_pretrained(ncf)
    train = read_records(prepared, "train")
    csr = package_csr(train)
    if hasattr(net, "fit_packages"):
        net.fit_packages(np.split(csr.indices, csr.indptr[1:-1]), m, cfg.seed)
    index = CandidateIndex(encode_records(ncf.encode, train, v, cfg.eval.batch_size), csr,
                           train["record_id"].to_pylist())
    return ModelBundle(path=prepared, cfg=replace(cfg, model=replace(cfg.model, name=model)), model_name=model,
                       ncf=ncf, model=net.eval(), drugs=prep.drugs, doc_words=prep.doc_words,
                       relation=prep.relation, cooc=prep.cooc, index=index, manifest=prep.manifest, metrics={},
                       info={"num_drugs": m, "num_doc_words": v, "threshold": cfg.data.threshold,
                             "top_k": mean_package_size(csr), "model": model})


@torch.no_grad()
def library(bundle: ModelBundle, records: pa.Table, k: int, batch: int) -> dict:
    """The library's evaluator, timed per stage."""
    v = bundle.num_doc_words
    t0 = time.perf_counter()
    cands = bundle.index.query(encode_records(bundle.ncf.encode, records, v, batch), k=k)
    t1 = time.perf_counter()
    u = encode_records(bundle.model.encode, records, v, batch)
    scores = score_candidates(bundle.model, u, cands, bundle.relation, bundle.cooc, bundle.threshold, batch)
    picks = cands.pick(scores)[1]  # pick_packages
    t2 = time.perf_counter()
    mbr_pick(cands, scores, 1.0)
    t3 = time.perf_counter()
    return {"retrieval_s": t1 - t0, "scoring_s": t2 - t1, "mbr_s": t3 - t2, "candidates": cands.packages,
            "picks": picks}


@torch.no_grad()
def plain(bundle: ModelBundle, records: pa.Table, k: int) -> dict:
    """One record at a time: NumPy cosine top-``k``, then the reference model code."""
    v, index, model = bundle.num_doc_words, bundle.index, bundle.model
    emb = index.embeddings.numpy()  # stored L2-normalized
    ip, ix = index.indptr, index.indices
    retrieval = scoring = 0.0
    candidates, picks = [], []
    was_fast = getattr(model, "fast", False)
    if hasattr(model, "fast"):
        model.fast = False  # the straightforward reference code
    try:
        for i in range(records.num_rows):
            row = records.slice(i, 1)
            t0 = time.perf_counter()
            u = bundle.ncf.encode(collate_patients(row, v)).float().numpy()[0]
            sims = emb @ (u / max(float(np.linalg.norm(u)), 1e-12))
            seen, pkgs = set(), []
            for r in np.argsort(-sims, kind="stable")[:k]:
                pkg = ix[ip[r]: ip[r + 1]]
                if tuple(pkg) not in seen:
                    seen.add(tuple(pkg))
                    pkgs.append(pkg)
            t1 = time.perf_counter()
            um = model.encode(collate_patients(row, v))
            indptr = np.concatenate([[0], np.cumsum([len(p) for p in pkgs])]).astype(np.int64)
            graphs = candidate_graphs(PackageCSR(indptr, np.concatenate(pkgs).astype(np.int64)), bundle.relation,
                                      bundle.cooc, bundle.threshold)
            scores = model.score(um, graphs, torch.zeros(len(pkgs), dtype=torch.long)).numpy()
            best = pkgs[int(np.argmax(scores))]
            t2 = time.perf_counter()
            retrieval, scoring = retrieval + (t1 - t0), scoring + (t2 - t1)
            candidates.append(pkgs)
            picks.append(best)
    finally:
        if hasattr(model, "fast"):
            model.fast = was_fast
    return {"retrieval_s": retrieval, "scoring_s": scoring, "candidates": candidates, "picks": picks}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paper", action="store_true", help="paper scale: configs/paper.yaml, 158,556 records, "
                                                        "1,428 drugs")
    p.add_argument("--config", help="YAML config (default: configs/tiny.yaml, or configs/paper.yaml with --paper)")
    p.add_argument("--records", type=int, help="synthetic records (default: synth.records of the config)")
    p.add_argument("--drugs", type=int, help="synthetic drugs (default: synth.drugs of the config)")
    p.add_argument("--model", default="ag", help="package model (ag, wg, gnn, a baseline; default ag)")
    p.add_argument("--model-dir", help="a trained model directory instead of untrained weights")
    p.add_argument("--prepared", help="prepared data to evaluate on instead of synthetic data (with --model-dir: "
                                      "default its data.prepared)")
    p.add_argument("--neighbors", type=int, help="candidate-set size k (default: eval.neighbors)")
    p.add_argument("--batch-size", type=int, help="library: queries per call (default: eval.batch_size)")
    p.add_argument("--queries", type=int, help="library: at most this many test records (default: all)")
    p.add_argument("--plain-records", type=int, default=200, help="plain loop: first N test records (default 200)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--workdir", default=os.path.join(REPO, "runs", "bench-evaluate"),
                   help="where the synthetic data is generated and prepared once")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model_dir:
        bundle = load_model_dir(args.model_dir)
        prepared = args.prepared or bundle.cfg.data.prepared
    else:
        cfg = load_config(args.config or os.path.join(REPO, "configs", "paper.yaml" if args.paper else "tiny.yaml"))
        records = args.records or cfg.synth.records
        drugs = args.drugs or cfg.synth.drugs
        prepared = args.prepared or ensure_prepared(cfg, args.workdir, records, drugs)
        bundle = untrained_bundle(cfg, prepared, args.model)
    test = read_records(prepared, "test")
    if args.queries:
        test = test.slice(0, args.queries)
    k = args.neighbors or bundle.cfg.eval.neighbors
    batch = args.batch_size or bundle.cfg.eval.batch_size
    n_plain = min(args.plain_records, test.num_rows)
    lib = library(bundle, test, k, batch)
    ref = plain(bundle, test.slice(0, n_plain), k)
    same_cands = sum(len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
                     for a, b in zip(lib["candidates"][:n_plain], ref["candidates"]))
    same_pick = sum(np.array_equal(a, b) for a, b in zip(lib["picks"][:n_plain], ref["picks"]))

    print(f"model {bundle.model_name}, {len(bundle.index)} training patients, {bundle.num_drugs} drugs, k={k}, "
          f"library batch {batch}, torch threads {torch.get_num_threads()}")
    print(f"{'implementation':<16}{'records':>9}{'retrieval rec/s':>17}{'scoring rec/s':>15}{'total rec/s':>13}")
    for name, res, n in (("library", lib, test.num_rows), ("plain loop", ref, n_plain)):
        total = res["retrieval_s"] + res["scoring_s"]
        print(f"{name:<16}{n:>9}{n / max(res['retrieval_s'], 1e-12):>17.1f}"
              f"{n / max(res['scoring_s'], 1e-12):>15.1f}{n / max(total, 1e-12):>13.1f}")
    print(f"expected-F1 pick (T=1) on the library's scores: {test.num_rows / max(lib['mbr_s'], 1e-12):.1f} rec/s, "
          f"{100 * lib['mbr_s'] / max(lib['scoring_s'], 1e-12):.1f} % of the scoring time")
    print(f"agreement on the first {n_plain} records: same candidate set {same_cands}/{n_plain}, "
          f"same pick {same_pick}/{n_plain}")


if __name__ == "__main__":
    main()
