"""Throughput of ``dpr prepare`` (Ray Data) next to a single-process reference.

The reference runs the same per-batch functions (validation, normalization, disease
documents, co-occurrence counts, package graphs) in a plain loop over pyarrow batches in
one process, with no Ray: the ratio shows what the distributed pipeline costs or gains.

    python benchmarks/prepare.py --records 158556 --drugs 1428

prints a table of records/s for both, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dpr_dist.config import load_config  # noqa: E402
from dpr_dist.data import io, synth  # noqa: E402
from dpr_dist.data.graphs import cooccurrence_table, merge_counts, pair_counts, relation_table  # noqa: E402
from dpr_dist.data.prepare import assign_splits, prepare  # noqa: E402
from dpr_dist.data.prepare_batches import _ids, build_batch, clean_batch  # noqa: E402
from dpr_dist.data.prepare_inputs import load_interactions, make_normalizer  # noqa: E402


def reference(cfg, emr_dir: str, ddi: str, out: str) -> int:
    """The same steps in one process, no Ray."""
    dc = cfg.data
    inter, _ = load_interactions(ddi)
    raw_names = set()
    for f in io.list_files(emr_dir):
        col = pq.read_table(f, columns=["drugs"])["drugs"]
        raw_names.update(pc.unique(pc.list_flatten(col)).to_pylist())
    normalizer = make_normalizer(inter, dc.drug_vocab, sorted(n for n in raw_names if n))
    inter = inter.set_column(0, "drug_a", normalizer.normalize_array(inter["drug_a"].combine_chunks()))
    inter = inter.set_column(1, "drug_b", normalizer.normalize_array(inter["drug_b"].combine_chunks()))
    cleaned = []
    for f in io.list_files(emr_dir):
        for b in pq.ParquetFile(f).iter_batches(batch_size=dc.rows_per_block):
            cleaned.append(clean_batch(pa.Table.from_batches([b]), normalizer, dc.min_drugs, dc.note_max_len))
    table = pa.concat_tables(cleaned)
    good = table.filter(pc.is_null(table["reject_reason"]))
    split_of = assign_splits(good["patient_id"].to_numpy(zero_copy_only=False), dc.split, cfg.seed)
    keys = pa.array(list(split_of)), pa.array(list(split_of.values()))
    good = good.append_column("split", pc.take(keys[1], pc.index_in(good["patient_id"], value_set=keys[0])))
    drug_vocab = pc.unique(pc.list_flatten(good["drugs"])).sort()
    train = good.filter(pc.equal(good["split"], "train"))
    doc_vocab = pc.unique(pc.list_flatten(train["doc"])).sort()
    m = len(drug_vocab)
    parts = []
    for b in train.to_batches(dc.rows_per_block):
        off, ids = _ids(pa.Table.from_batches([b])["drugs"], drug_vocab)
        parts.append(pair_counts(off, ids.astype(np.int64), m))
    item, k, c = merge_counts(parts, m)
    cooc = cooccurrence_table(item, k, c, m)
    ia = pc.index_in(inter["drug_a"], value_set=drug_vocab)
    ib = pc.index_in(inter["drug_b"], value_set=drug_vocab)
    ok = pc.and_(pc.is_valid(ia), pc.is_valid(ib))
    relation, _ = relation_table(ia.filter(ok).to_numpy(), ib.filter(ok).to_numpy(),
                                 inter.filter(ok)["code"].to_numpy(), m)
    os.makedirs(out, exist_ok=True)
    for i, b in enumerate(good.to_batches(dc.rows_per_block)):
        built = build_batch(pa.Table.from_batches([b]), drug_vocab, doc_vocab, relation, cooc, dc.build_threshold)
        pq.write_table(built, f"{out}/part-{i:05d}.parquet")
    return good.num_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=158_556)
    ap.add_argument("--drugs", type=int, default=1_428)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    import ray

    work = args.workdir or tempfile.mkdtemp(prefix="dpr-bench-prepare-")
    t = time.perf_counter()
    emr, ddi = synth.generate(args.records, args.drugs, seed=args.seed)
    synth.write(emr, ddi, work)
    gen_s = time.perf_counter() - t
    cfg = load_config(None, [f"seed={args.seed}"])

    t = time.perf_counter()
    n_ref = reference(cfg, f"{work}/emr", f"{work}/ddi.parquet", f"{work}/ref")
    ref_s = time.perf_counter() - t

    ray.init(include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    t = time.perf_counter()
    man = prepare(cfg, emr=f"{work}/emr", ddi=f"{work}/ddi.parquet", out=f"{work}/prepared")
    ray_s = time.perf_counter() - t  # includes Ray's start-up of workers, not ray.init
    assert man["table1"]["records"] == n_ref, (man["table1"]["records"], n_ref)

    rows = [("single-process reference", n_ref, ref_s), ("dpr prepare (Ray Data)", man["table1"]["records"], ray_s)]
    print(f"\nprepare: {args.records} records, {args.drugs} drugs, {os.cpu_count()} CPUs "
          f"(synthetic data generated in {gen_s:.1f}s)")
    print(f"{'implementation':<28}{'records':>10}{'seconds':>10}{'records/s':>12}{'vs reference':>14}")
    for name, n, s in rows:
        print(f"{name:<28}{n:>10}{s:>10.1f}{n / s:>12.0f}{ref_s / s:>13.2f}x")


if __name__ == "__main__":
    main()
