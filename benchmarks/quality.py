"""Model quality on prepared data in one process, with the library's own functions.

The diagnosis loop behind "Why the package models win" in ``docs/training.md``: NCF
pre-training, candidate sets, the NCF / popularity / NN baselines and the oracle ceiling,
then each package model trained with the paper's loss (eqs. 15 / 21, global-batch
negatives) plus, optionally, the candidate-ranking term (``--listwise W --tau T``) or
neighbourhood negatives (``--hard N``); validation F1 per epoch, test F1 of the best
validation epoch (``--test``). Much faster to iterate than Ray Train on 2 cores.

    python benchmarks/quality.py --config CONFIG --out DIR --seed 0 --models ag,wg,gnn --epochs 6 --test \
        [--listwise 1 --tau 0.1] [--hard 5]

``CONFIG`` must point at prepared data (``data.prepared``; ``jobs/demo.py`` or ``dpr
prepare`` make it). Results go to ``DIR/res_s{seed}_h{hard}{tag}.json``; the pre-trained
NCF is cached as ``DIR/ncf_s{seed}.pt``.
"""
import argparse
import json
import os
import sys
import time
from dataclasses import replace

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import numpy as np
import torch

from dpr_dist.config import load_config
from dpr_dist.data.documents import NOTE_VOCAB_SIZE
from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.eval.evaluate import encode_records, pick_packages, popularity_packages
from dpr_dist.eval.metrics import mean_package_size, oracle_ceiling, package_prf, topk_drugs
from dpr_dist.models.layers import l2_penalty
from dpr_dist.models.ncf import NCF
from dpr_dist.models.variants import build_model
from dpr_dist.runtime import seed_everything
from dpr_dist.train.collate import (RECORD_COLUMNS, collate_packages, collate_patients, collate_positives,
                                    package_csr)
from dpr_dist.train.neighbourhood import Neighbourhood
from dpr_dist.models.ranking import CandidateRanking
from dpr_dist.train.negatives import negative_layout, sample_negative_drugs, sample_negative_packages
from dpr_dist.train.prepared import load_prepared, read_records

torch.set_num_threads(1)
ap = argparse.ArgumentParser()
ap.add_argument("--config", default="configs/demo.yaml")
ap.add_argument("--out", default="runs/quality")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--models", default="gnn,wg,ag")
ap.add_argument("--hard", type=int, default=0)
ap.add_argument("--hard_k", type=int, default=10)
ap.add_argument("--epochs", type=int, default=5)
ap.add_argument("--ce", type=float, default=1.0)
ap.add_argument("--neg", type=int, default=10)
ap.add_argument("--bs", type=int, default=64)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--tag", default="")
ap.add_argument("--listwise", type=float, default=0.0)
ap.add_argument("--tau", type=float, default=0.1)
ap.add_argument("--test", action="store_true", help="also report test F1 at the best val epoch")
args = ap.parse_args()

cfg = load_config(args.config, [])
os.makedirs(args.out, exist_ok=True)
cfg = replace(cfg, train=replace(cfg.train, seed=args.seed, negative_ratio=args.neg, batch_size=args.bs, lr=args.lr),
              model=replace(cfg.model, ce_weight=args.ce))
tc = cfg.train
prep = load_prepared(cfg.data.prepared, cfg.data.threshold)
train_tab = read_records(prep.path, "train", RECORD_COLUMNS)
val_tab = read_records(prep.path, "val")
test_tab = read_records(prep.path, "test")
V, M = prep.num_doc_words, prep.num_drugs
top_k = mean_package_size(package_csr(train_tab))
n = train_tab.num_rows


def batches(epoch):
    rng = np.random.default_rng([args.seed, epoch, 999])
    order = rng.permutation(n)
    for s in range(0, n, tc.batch_size):
        yield s // tc.batch_size, train_tab.take(order[s: s + tc.batch_size])


def f1(preds, tab):
    return float(package_prf(preds, package_csr(tab))["f1"].mean())


# ------------------------------------------------------------------ NCF pre-training (cached)
ncf_path = os.path.join(args.out, f"ncf_s{args.seed}.pt")
seed_everything(args.seed)
ncf = NCF(cfg.model, M, V, NOTE_VOCAB_SIZE)
if os.path.exists(ncf_path):
    ncf.load_state_dict(torch.load(ncf_path))
else:
    opt = torch.optim.Adam(ncf.parameters(), lr=tc.lr)
    best, best_state = -1, None
    for ep in range(tc.pretrain_epochs):
        ncf.train()
        for step, tab in batches(ep):
            rng = np.random.default_rng([args.seed, ep, step, 0])
            pos, mask = collate_positives(tab, M)
            pool = np.unique(pos[mask].numpy())
            neg = sample_negative_drugs(pos.numpy(), mask.numpy(), pool, M, tc.negative_ratio, rng)
            loss = ncf(collate_patients(tab, V), pos, torch.from_numpy(neg), mask)
            loss = loss + tc.l2 * l2_penalty(ncf.parameters())
            opt.zero_grad(); loss.backward(); opt.step()
        ncf.eval()
        with torch.no_grad():
            vf = f1(topk_drugs(ncf.rank_drugs(encode_records(ncf.encode, val_tab, V)), top_k), val_tab)
        print(f"ncf epoch {ep} val F1 {vf:.4f}", flush=True)
        if vf > best:
            best, best_state = vf, {k: v.clone() for k, v in ncf.state_dict().items()}
    ncf.load_state_dict(best_state)
    torch.save(best_state, ncf_path)
ncf.eval()

with torch.no_grad():
    u_tr = encode_records(ncf.encode, train_tab, V)
    u_va = encode_records(ncf.encode, val_tab, V)
    u_te = encode_records(ncf.encode, test_tab, V)
index = CandidateIndex(u_tr, package_csr(train_tab), train_tab["record_id"].to_pylist())
cands = {"val": index.query(u_va, k=cfg.eval.neighbors), "test": index.query(u_te, k=cfg.eval.neighbors)}
tabs = {"val": val_tab, "test": test_tab}
res = {"seed": args.seed, "args": vars(args)}
with torch.no_grad():
    for split, u in (("val", u_va), ("test", u_te)):
        t = tabs[split]
        res[f"ncf_{split}"] = f1(topk_drugs(ncf.rank_drugs(u), top_k), t)
        counts = np.bincount(package_csr(train_tab).indices, minlength=M)
        res[f"pop_{split}"] = f1(popularity_packages(counts, top_k, t.num_rows), t)
        c = cands[split]
        res[f"nn_{split}"] = f1(c.pick(np.zeros(int(c.valid.sum())))[1], t)
        res[f"ceiling_{split}"] = float(np.mean(oracle_ceiling(c, package_csr(t))))
print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items() if k != "args"}), flush=True)

hard = None
if args.hard > 0 or args.listwise > 0:
    t0 = time.time()
    hard = Neighbourhood.build(index, args.hard_k, args.hard, prep.relation, prep.cooc, cfg.data.threshold)
    print(f"hard table {hard.table.shape} in {time.time() - t0:.1f}s", flush=True)


def evaluate(model, split):
    model.eval()
    t = tabs[split]
    with torch.no_grad():
        u = encode_records(model.encode, t, V)
        preds = pick_packages(model, u, cands[split], prep.relation, prep.cooc, cfg.data.threshold, 128)
    model.train()
    sizes = float(np.mean([len(p) for p in preds]))
    return f1(preds, t), sizes


for kind in args.models.split(","):
    mcfg = replace(cfg.model, name=kind)
    seed_everything(args.seed)
    model = build_model(mcfg, M, V, NOTE_VOCAB_SIZE)
    model.load_pretrained(ncf)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    trainer = CandidateRanking(model, args.listwise, args.tau)
    k = tc.negative_ratio
    best = (-1, -1, None)
    hist = []
    for ep in range(args.epochs):
        t0 = time.time()
        tot, cnt, acc = 0.0, 0, 0.0
        for step, tab in batches(ep):
            rng = np.random.default_rng([args.seed, ep, step, 0])
            own = collate_packages(tab, cfg.data.threshold, M)
            idx_own = np.arange(len(own))
            neg = sample_negative_packages(own.keys(), idx_own, k, rng)
            ps = own
            if hard is not None:
                ps, neg, _ = hard.extend(own, neg, tab["record_id"].to_pylist(), rng)
            graphs = ps.take(negative_layout(idx_own, neg)).to_batch()
            owner = torch.arange(len(own)).repeat_interleave(1 + k)
            plan = model.plan(graphs, owner, len(own), k)
            cb = hard.candidates(tab["record_id"].to_pylist(), package_csr(tab), model) if args.listwise > 0 else None
            loss, extra = trainer(collate_patients(tab, V), graphs, owner, k, candidates=cb, plan=plan)
            loss = loss + tc.l2 * l2_penalty(model.parameters())
            opt.zero_grad(); loss.backward(); opt.step()
            tot += float(loss.detach()) * tab.num_rows; cnt += tab.num_rows; acc += float(extra["pair_acc"])
        vf, vsize = evaluate(model, "val")
        h = {"epoch": ep, "loss": tot / cnt, "pair_acc": acc / (step + 1), "val_f1": vf, "val_size": vsize,
             "s": time.time() - t0}
        hist.append(h)
        print(kind, json.dumps({a: round(b, 4) if isinstance(b, float) else b for a, b in h.items()}), flush=True)
        if vf > best[0]:
            best = (vf, ep, {a: b.clone() for a, b in model.state_dict().items()})
    res[kind] = {"best_val_f1": best[0], "best_epoch": best[1], "hist": hist}
    if args.test:
        model.load_state_dict(best[2])
        res[kind]["test_f1"], res[kind]["test_size"] = evaluate(model, "test")
    print("RESULT", kind, json.dumps({a: b for a, b in res[kind].items() if a != "hist"}), flush=True)

out = os.path.join(args.out, f"res_s{args.seed}_h{args.hard}{args.tag}.json")
json.dump(res, open(out, "w"), indent=1)
print("wrote", out)
