"""Neighbourhood negatives: nearest other patients, never the own package, graphs as at test time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpr_dist.data.graphs import PairTable
from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.eval.evaluate import candidate_graphs
from dpr_dist.eval.package_csr import PackageCSR, gather_rows
from dpr_dist.train.neighbourhood import (
    Neighbourhood,
    consensus_f1,
    neighbour_table,
    package_graphs,
    sample_neighbours,
)
from dpr_dist.train.packages import PackageSet

M = 25


def make_index(n: int = 40, seed: int = 0) -> tuple[CandidateIndex, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    pkgs = [np.sort(rng.choice(M, size=int(rng.integers(2, 7)), replace=False)) for _ in range(n)]
    pkgs[5] = pkgs[3].copy()  # two patients with the same package
    pkgs[7] = pkgs[3].copy()
    emb = torch.from_numpy(rng.normal(size=(n, 6)).astype(np.float32))
    emb[5] = emb[3] + 1e-3  # ... that are each other's nearest neighbours
    return CandidateIndex(emb, pkgs, [f"R{i:03d}" for i in range(n)]), pkgs


def tables() -> tuple[PairTable, PairTable]:
    rng = np.random.default_rng(1)
    keys = np.unique(rng.integers(0, M * M, 150))
    relation = PairTable(M, keys[::3], rng.integers(0, 3, len(keys[::3])).astype(np.int8))
    cooc = PairTable(M, keys, rng.random(len(keys)).astype(np.float32) * 0.2)
    return relation, cooc


def test_neighbour_table_is_nearest_others_without_own_package():
    index, pkgs = make_index()
    table = neighbour_table(index, k=4)
    assert table.shape == (40, 4)
    n = len(index)
    for i in range(n):
        row = table[i][table[i] >= 0]
        assert i not in row
        assert all(not np.array_equal(pkgs[j], pkgs[i]) for j in row)  # never the own package
        # the same rows as a brute-force search over the allowed rows, most similar first
        allowed = [j for j in range(n) if j != i and not np.array_equal(pkgs[j], pkgs[i])]
        sims = (index.embeddings[i] @ index.embeddings[allowed].T).numpy()
        # distinct packages only (the candidate sets are de-duplicated the same way)
        seen, expect = set(), []
        for j in np.asarray(allowed)[np.argsort(-sims, kind="stable")]:
            key = tuple(pkgs[j])
            if key not in seen:
                seen.add(key)
                expect.append(j)
        assert row.tolist() == expect[:4]
    assert 5 not in table[3] and 7 not in table[3] and 3 not in table[5]


def test_neighbour_table_of_some_rows_equals_those_rows_of_the_whole_table():
    index, _ = make_index()
    rows = np.array([3, 5, 0, 39, 7])
    np.testing.assert_array_equal(neighbour_table(index, k=4, rows=rows), neighbour_table(index, k=4)[rows])


def test_sample_neighbours_without_replacement_and_padding():
    table = np.array([[4, 5, 6, -1], [7, -1, -1, -1], [-1, -1, -1, -1]], np.int64)
    rng = np.random.default_rng(0)
    out = sample_neighbours(table, np.array([0, 1, 2, -1]), 3, rng)
    assert out.shape == (4, 3)
    assert sorted(out[0].tolist()) == [4, 5, 6]  # all three, no repeat
    assert out[1].tolist() == [7, 7, 7]  # a small neighbourhood wraps around
    assert out[2].tolist() == [-1, -1, -1] and out[3].tolist() == [-1, -1, -1]
    draws = np.stack([sample_neighbours(table, np.array([0]), 1, np.random.default_rng(s))[0, 0] for s in range(60)])
    assert set(draws.tolist()) == {4, 5, 6}  # every neighbour gets drawn


def test_graphs_match_candidate_graphs():
    index, _ = make_index()
    relation, cooc = tables()
    csr = gather_rows(PackageCSR(index.indptr, index.indices), np.array([0, 3, 9]))
    mine = package_graphs(csr, relation, cooc, 0.05).to_batch()
    ref = candidate_graphs(csr, relation, cooc, 0.05)
    for key in ("drug", "edge_index", "edge_rel", "edge_w", "batch"):
        assert torch.equal(getattr(mine, key), getattr(ref, key)), key


@pytest.mark.parametrize("count", [1, 3])
def test_extend_fills_last_slots_with_neighbourhood_packages(count):
    index, pkgs = make_index()
    relation, cooc = tables()
    hard = Neighbourhood.build(index, k=5, count=count, relation=relation, cooc=cooc, threshold=0.05)
    rows = np.array([3, 10, 20])
    batch = package_graphs(gather_rows_(index, rows), relation, cooc, 0.05)
    neg = np.array([[1, 2, 1, 2], [0, 2, 0, 2], [0, 1, 1, 0]], np.int64)  # global-batch negatives
    ids = [f"R{r:03d}" for r in rows]
    ps, out, share = hard.extend(batch, neg, ids, np.random.default_rng(0))
    assert out.shape == neg.shape and share == pytest.approx(count / 4)
    assert np.array_equal(out[:, : 4 - count], neg[:, : 4 - count])  # global negatives kept
    assert isinstance(ps, PackageSet) and len(ps) == 3 + 3 * count
    got = ps.packages()
    for i, r in enumerate(rows):
        for j in out[i, 4 - count:]:
            assert j >= 3  # appended packages
            assert not np.array_equal(np.sort(got[j]), pkgs[r])  # never the own package
            assert any(np.array_equal(np.sort(got[j]), index.package(t)) for t in hard.table[r] if t >= 0)


def test_extend_unknown_patient_keeps_global_negatives():
    index, _ = make_index()
    relation, cooc = tables()
    hard = Neighbourhood.build(index, k=5, count=2, relation=relation, cooc=cooc, threshold=0.05)
    batch = package_graphs(gather_rows_(index, np.array([1, 2])), relation, cooc, 0.05)
    neg = np.array([[1, 1, 1], [0, 0, 0]], np.int64)
    ps, out, share = hard.extend(batch, neg, ["R001", "not-a-training-record"], np.random.default_rng(0))
    assert np.array_equal(out[1], neg[1]) and (out[0, 1:] >= 2).all()
    assert share == pytest.approx(2 / 6) and len(ps) == 4


def gather_rows_(index: CandidateIndex, rows: np.ndarray) -> PackageCSR:
    """Packages ``rows`` of the index."""
    return gather_rows(PackageCSR(index.indptr, index.indices), rows)


def test_candidates_grid_targets_are_f1_against_own_package():
    index, pkgs = make_index()
    relation, cooc = tables()
    hard = Neighbourhood.build(index, k=4, count=0, relation=relation, cooc=cooc, threshold=0.05)
    rows = np.array([3, 11])
    ids = [f"R{r:03d}" for r in rows] + ["unknown"]
    own = gather_rows_(index, np.array([3, 11, 12]))
    cb = hard.candidates(ids, own)
    assert cb.plan is None and cb.valid.shape == (3, 4)
    assert not cb.valid[2].any()  # an id outside the training split has no candidate set
    drugs, batch = cb.graphs.drug.numpy(), cb.graphs.batch.numpy()
    for c, (o, slot) in enumerate(zip(cb.owner.tolist(), cb.slot.tolist())):
        r, col = divmod(slot, 4)
        assert r == o and cb.valid[r, col]
        cand = set(drugs[batch == c].tolist())
        assert cand == set(index.package(hard.table[rows[r], col]).tolist())
        truth = set(pkgs[rows[r]].tolist())
        inter = len(cand & truth)
        f1 = 2 * inter / (len(cand) + len(truth))
        assert float(cb.target[r, col]) == pytest.approx(f1)


def _f1(a, b) -> float:
    a, b = set(a), set(b)
    return 2 * len(a & b) / (len(a) + len(b))


def test_consensus_f1_is_the_mean_f1_against_the_other_candidates_of_the_set():
    pkgs = [[0, 1, 2], [0, 1], [1, 5, 6, 7], [3, 4], [9]]
    owner = np.array([0, 0, 0, 1, 2])  # sets of 3, 1 and 1 candidates
    csr = PackageCSR(np.cumsum([0] + [len(p) for p in pkgs]), np.concatenate(pkgs))
    alone = np.array([9.0, 9.0, 9.0, 0.25, 0.5])
    got = consensus_f1(csr, owner, alone)
    assert got[0] == pytest.approx((_f1(pkgs[0], pkgs[1]) + _f1(pkgs[0], pkgs[2])) / 2)
    assert got[1] == pytest.approx((_f1(pkgs[1], pkgs[0]) + _f1(pkgs[1], pkgs[2])) / 2)
    assert got[2] == pytest.approx((_f1(pkgs[2], pkgs[0]) + _f1(pkgs[2], pkgs[1])) / 2)
    assert got[3:].tolist() == [0.25, 0.5]  # alone in its set: the given value


@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0])
def test_candidates_targets_with_consensus_mix_own_f1_and_the_sets_consensus(beta):
    index, pkgs = make_index()
    relation, cooc = tables()
    hood = Neighbourhood.build(index, k=4, count=0, relation=relation, cooc=cooc, threshold=0.05,
                               consensus=beta)
    rows = np.array([3, 11])
    cb = hood.candidates([f"R{r:03d}" for r in rows], gather_rows_(index, rows))
    for r, row in enumerate(rows):
        cands = [index.package(j) for j in hood.table[row] if j >= 0]
        for col, cand in enumerate(cands):
            own = _f1(cand, pkgs[row])
            mean_other = np.mean([_f1(cand, o) for i, o in enumerate(cands) if i != col])
            assert float(cb.target[r, col]) == pytest.approx((1 - beta) * own + beta * mean_other, rel=1e-6)


def test_with_consensus_mixes_a_trials_targets_as_a_neighbourhood_built_with_it():
    index, _ = make_index()
    relation, cooc = tables()
    plain = Neighbourhood.build(index, k=4, count=0, relation=relation, cooc=cooc, threshold=0.05)
    assert plain.with_consensus(0.0) is plain
    mixed = plain.with_consensus(0.4)
    built = Neighbourhood.build(index, k=4, count=0, relation=relation, cooc=cooc, threshold=0.05, consensus=0.4)
    rows = np.array([3, 11])
    ids = [f"R{r:03d}" for r in rows]
    got, want = mixed.candidates(ids, gather_rows_(index, rows)), built.candidates(ids, gather_rows_(index, rows))
    assert torch.equal(got.target, want.target)
    assert not torch.equal(got.target, plain.candidates(ids, gather_rows_(index, rows)).target)


def test_at_threshold_builds_the_neighbours_graphs_at_a_trials_threshold():
    index, _ = make_index()
    relation, cooc = tables()
    low = Neighbourhood.build(index, k=4, count=0, relation=relation, cooc=cooc, threshold=0.01)
    assert low.at_threshold(0.01) is low
    high = low.at_threshold(0.15)
    assert (high.threshold, low.threshold) == (0.15, 0.01)  # the shared one is unchanged
    assert high.table is low.table and high.rows(["R003", "x"]).tolist() == [3, -1]  # same neighbours, no copy
    ids, own = ["R003", "R011"], gather_rows_(index, np.array([3, 11]))
    g_low, g_high = low.candidates(ids, own).graphs, high.candidates(ids, own).graphs
    assert torch.equal(g_low.drug, g_high.drug)
    # the same graphs as test-time candidates built at each threshold: fewer edges above 0.15
    assert g_high.edge_index.shape[1] < g_low.edge_index.shape[1]
    rows = high.table[[3, 11]].ravel()
    expect = package_graphs(gather_rows_(index, rows[rows >= 0]), relation, cooc, 0.15).to_batch()
    assert torch.equal(g_high.edge_index, expect.edge_index)


def test_models_that_read_no_edges_get_the_candidates_nodes_only():
    """A package baseline sees a package as its drugs: its candidates come without edges (not
    built at all), and score as they do with the full graphs; DPR models get the edges."""
    from dpr_dist.config import ModelConfig
    from dpr_dist.models.variants import build_model

    index, _ = make_index()
    relation, cooc = tables()
    hood = Neighbourhood.build(index, k=4, count=0, relation=relation, cooc=cooc, threshold=0.01)
    ids, own = ["R003", "R011"], gather_rows_(index, np.array([3, 11]))
    cfg = ModelConfig(mlp_out=4, char_dim=4, lstm_hidden=4, drug_dim=8, hidden=16, edge_dim=4)
    full = hood.candidates(ids, own).graphs
    assert full.edge_index.shape[1] > 0
    for name in ("package2vec", "lda", "br", "dam", "nn"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(**{**cfg.__dict__, "name": name}), M, 5, 10).eval()
        if hasattr(model, "fit_packages"):  # Package2vec, LDA: fitted on the training packages first
            model.fit_packages(list(np.split(index.indices, index.indptr[1:-1])), M, 0)
        cb = hood.candidates(ids, own, model)
        assert cb.graphs.edge_index.shape == (2, 0) and cb.graphs.edge_rel.numel() == 0, name
        assert torch.equal(cb.graphs.drug, full.drug) and torch.equal(cb.graphs.batch, full.batch)
        u = torch.randn(2, model.encoder.out_dim)
        with torch.no_grad():
            torch.testing.assert_close(model.score(u, cb.graphs, cb.owner), model.score(u, full, cb.owner))
    torch.manual_seed(0)
    wg = build_model(ModelConfig(**{**cfg.__dict__, "name": "wg", "fast": False}), M, 5, 10)
    assert torch.equal(hood.candidates(ids, own, wg).graphs.edge_index, full.edge_index)


def test_training_neighbourhood_follows_the_train_config():
    from types import SimpleNamespace

    from dpr_dist.config import load_config
    from dpr_dist.train.run import training_neighbourhood

    index, _ = make_index()
    relation, cooc = tables()
    prep = SimpleNamespace(relation=relation, cooc=cooc)
    assert training_neighbourhood(load_config(None), index, prep) is None  # rank_weight 0: not built
    cfg = load_config(None, ["train.rank_weight=1", "train.rank_neighbors=3", "train.rank_consensus=0.5"])
    hood = training_neighbourhood(cfg, index, prep)
    assert hood.table.shape == (len(index), 3) and hood.consensus == 0.5
    assert hood.threshold == cfg.data.threshold and hood.count == cfg.train.hard_negatives
