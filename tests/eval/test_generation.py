"""Tests of dpr_dist.eval.generation: each rule of paper section 6 on a constructed case."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from dpr_dist.data.graphs import ANTAGONISM, NONE, SYNERGISM, PairTable
from dpr_dist.eval.generation import (
    GenerationConfig,
    flatten,
    generate_batch,
    generate_packages,
    ranks_from_scores,
)

M = 20
A = np.array
# Three S1 packages: 0 and 1 everywhere, 2/3/4 once each (rare: 1/3 <= 0.34).
S1 = [A([0, 1, 2]), A([1, 0, 3]), A([0, 1, 4])]
CFG = GenerationConfig(rare_support=0.34, low_rank_l=10, top_l=3, unpopular_rank_L=10, high_cooc=0.5,
                       low_cooc=0.05, max_add=3, min_size=1, max_packages=100)


def table(entries: dict[tuple[int, int], float], dtype=np.int8, m: int = M) -> PairTable:
    """PairTable from ``{(v, u): value}``."""
    if not entries:
        return PairTable(m, np.zeros(0, np.int64), np.zeros(0, dtype))
    keys = np.array([v * m + u for v, u in entries], np.int64)
    vals = np.array(list(entries.values()), dtype)
    order = np.argsort(keys)
    return PairTable(m, keys[order], vals[order])


def rel(entries=None, m: int = M) -> PairTable:
    return table(entries or {}, np.int8, m)


def cooc(entries=None, m: int = M) -> PairTable:
    return table(entries or {}, np.float32, m)


def rank(best_first: list[int], m: int = M) -> np.ndarray:
    """Ranks where ``best_first`` take ranks 0, 1, ... and the other drugs follow by id."""
    order = list(best_first) + [d for d in range(m) if d not in best_first]
    out = np.empty(m, np.int64)
    out[order] = np.arange(m)
    return out


# default lists: l prefers the S1 drugs, L (popularity) is by id, so high-l drugs are popular
L_POP = rank([])
L_LIST = rank([0, 1, 2, 3, 4])


def run(candidates=S1, l_rank=L_LIST, L_rank=L_POP, relation=None, co=None, cfg=CFG):
    return generate_packages(candidates, l_rank, L_rank, relation or rel(), co or cooc(), cfg)


def sets(out, origin=None):
    return [p.drugs.tolist() for p in out if origin is None or p.origin == origin]


def test_no_rule_fires_returns_s1():
    out = run()
    assert sets(out) == [[0, 1, 2], [0, 1, 3], [0, 1, 4]]
    assert all(p.origin == "s1" and p.rules == [] for p in out)
    assert [p.source for p in out] == [0, 1, 2]


def test_delete_rare_low_l_drug():
    s1 = [A([0, 1, 2]), A([0, 1, 3]), A([0, 1, 15])]
    out = run(s1)
    s2 = [p for p in out if p.origin == "s2"]
    assert [p.drugs.tolist() for p in s2] == [[0, 1]]
    assert s2[0].rules == [{"rule": "delete_rare", "drug": 15}] and s2[0].source == 2
    assert sets(out, "s3") == []  # S3 of [0, 1] changes nothing: deduplicated


@pytest.mark.parametrize("case", ["high_in_l", "not_rare"])
def test_delete_rare_needs_both_conditions(case):
    if case == "high_in_l":  # rare but ranks high in l
        out = run([A([0, 1, 2]), A([0, 1, 3]), A([0, 1, 15])], l_rank=rank([0, 1, 2, 3, 15]))
    else:  # ranks low in l but in 2 of 3 packages
        out = run([A([0, 1, 15]), A([0, 1, 3]), A([0, 1, 15, 4])])
    assert all(p.origin == "s1" for p in out)


def test_add_unpopular_high_l_drug():
    L_rank = rank([d for d in range(M) if d != 12])  # 12 is the least popular drug
    out = run(l_rank=rank([12, 0, 1]), L_rank=L_rank)
    s2 = [p for p in out if p.origin == "s2"]
    assert sets(s2) == [[0, 1, 2, 12], [0, 1, 3, 12], [0, 1, 4, 12]]
    assert all(p.rules == [{"rule": "add_unpopular", "drug": 12}] for p in s2)
    assert sets(out, "s3") == []


def test_popular_high_l_drug_is_not_added():
    assert L_POP[12] == 12  # with unpopular_rank_L=13, drug 12 counts as popular
    cfg = dataclasses.replace(CFG, unpopular_rank_L=13)
    out = run(l_rank=rank([12, 0, 1]), cfg=cfg)
    assert all(p.origin == "s1" for p in out)


@pytest.mark.parametrize("pair", [(9, 0), (0, 9)])
def test_add_synergism_either_direction(pair):
    out = run(l_rank=rank([0, 9, 1]), relation=rel({pair: SYNERGISM}))
    s3 = [p for p in out if p.origin == "s3"]
    assert sets(s3) == [[0, 1, 2, 9], [0, 1, 3, 9], [0, 1, 4, 9]]
    assert all(p.rules == [{"rule": "add_synergism", "drug": 9, "partner": 0}] for p in s3)
    assert sets(out, "s2") == []


@pytest.mark.parametrize("case", ["no_interaction", "antagonism", "low_in_l", "partner_absent"])
def test_add_synergism_only_when_it_applies(case):
    l_rank, relation = rank([0, 9, 1]), rel({(9, 0): SYNERGISM})
    if case == "no_interaction":
        relation = rel({(9, 0): NONE})
    elif case == "antagonism":
        relation = rel({(9, 0): ANTAGONISM})
    elif case == "low_in_l":
        l_rank = rank([0, 1, 2, 9])  # rank 3 == top_l: not high
    else:
        relation = rel({(9, 7): SYNERGISM})  # 7 is in no package
    assert all(p.origin == "s1" for p in run(l_rank=l_rank, relation=relation))


def test_add_cooccurrence():
    out = run(l_rank=rank([0, 9, 1]), co=cooc({(2, 9): 0.8, (3, 9): 0.2}))
    s3 = [p for p in out if p.origin == "s3"]
    assert sets(s3) == [[0, 1, 2, 9]]  # p_39 = 0.2 is not high
    assert s3[0].rules == [{"rule": "add_cooccurrence", "drug": 9, "partner": 2}]
    assert s3[0].source == 0


@pytest.mark.parametrize("entries", [{(9, 2): 0.8}, {(2, 9): 0.5}])
def test_add_cooccurrence_needs_high_p_vd(entries):
    # p_92 is "given 9, 2 is there" (wrong direction); p_29 = 0.5 is not above 0.5
    out = run(l_rank=rank([0, 9, 1]), co=cooc(entries))
    assert all(p.origin == "s1" for p in out)


def test_synergism_wins_over_cooccurrence_and_best_partner_is_named():
    out = run(l_rank=rank([0, 9, 1]), relation=rel({(9, 1): SYNERGISM, (9, 2): SYNERGISM}),
              co=cooc({(0, 9): 0.9}))
    first = next(p for p in out if p.origin == "s3" and p.source == 0)
    assert first.rules == [{"rule": "add_synergism", "drug": 9, "partner": 1}]  # 1 ranks above 2


def test_delete_antagonism_drops_lower_ranked_in_l():
    l_rank = rank([0, 2, 1, 3, 4])  # 2 ranks above 1
    out = run(l_rank=l_rank, relation=rel({(1, 2): ANTAGONISM}))
    s3 = [p for p in out if p.origin == "s3"]
    assert sets(s3) == [[0, 2]]
    assert s3[0].rules == [{"rule": "delete_antagonism", "drug": 1, "partner": 2}]
    out = run(l_rank=rank([0, 1, 2, 3, 4]), relation=rel({(2, 1): ANTAGONISM}))
    assert sets(out, "s3") == [[0, 1]]


def test_delete_antagonism_not_when_often_prescribed_together():
    for co in ({(1, 2): 0.3}, {(2, 1): 0.3}):
        out = run(relation=rel({(1, 2): ANTAGONISM}), co=cooc(co))
        assert all(p.origin == "s1" for p in out)


def test_delete_antagonism_resolves_chains_greedily():
    # 0-1 and 1-2 antagonistic, l order 0 > 1 > 2: deleting 1 resolves both, 2 stays
    out = run([A([0, 1, 2, 5])], l_rank=rank([0, 1, 2, 5]), relation=rel({(0, 1): ANTAGONISM, (1, 2): ANTAGONISM}))
    s3 = [p for p in out if p.origin == "s3"]
    assert sets(s3) == [[0, 2, 5]]
    assert s3[0].rules == [{"rule": "delete_antagonism", "drug": 1, "partner": 0}]


def test_s3_builds_on_s2_and_explains_the_chain():
    L_rank = rank([d for d in range(M) if d != 12])
    s1 = [A([0, 1, 2]), A([0, 1, 3]), A([0, 1, 15])]
    out = run(s1, l_rank=rank([12, 9, 0, 1]), L_rank=L_rank, relation=rel({(9, 12): SYNERGISM}))
    last = next(p for p in out if p.origin == "s3" and p.source == 2)
    assert last.drugs.tolist() == [0, 1, 9, 12]
    assert last.rules == [{"rule": "delete_rare", "drug": 15}, {"rule": "add_unpopular", "drug": 12},
                          {"rule": "add_synergism", "drug": 9, "partner": 12}]


def test_s_contains_s1_unchanged_and_first():
    rng = np.random.default_rng(0)
    s1 = [rng.choice(M, size=5, replace=False) for _ in range(6)]
    relation = rel({(int(a), int(b)): int(c) for a, b, c in rng.integers(0, [M, M, 3], size=(40, 3))})
    out = run(s1, l_rank=ranks_from_scores(rng.random(M)), relation=relation,
              co=cooc({(int(a), int(b)): 0.9 for a, b in rng.integers(0, M, size=(40, 2))}))
    assert sets(out)[:6] == [sorted(p.tolist()) for p in s1]
    assert all(p.origin == "s1" and p.rules == [] for p in out[:6])
    assert [p.source for p in out[:6]] == list(range(6))


def test_dedupe():
    cfg = dataclasses.replace(CFG, rare_support=0.5)
    # the duplicate S1 package appears once; both S2 reforms give [0, 1]
    out = run([A([0, 1, 15]), A([15, 1, 0]), A([0, 1, 16])], cfg=cfg)
    assert sets(out) == [[0, 1, 15], [0, 1, 16], [0, 1]]
    assert [p.origin for p in out] == ["s1", "s1", "s2"]
    # a reform that recreates an existing S1 package keeps its S1 origin
    out = run([A([0, 1]), A([0, 1, 15]), A([0, 1, 3]), A([0, 1, 3])], cfg=cfg)
    assert sets(out) == [[0, 1], [0, 1, 15], [0, 1, 3]] and all(p.origin == "s1" for p in out)


def test_max_add_keeps_best_l_ranks():
    L_rank = rank([d for d in range(M) if d not in (12, 13, 14)])
    cfg = dataclasses.replace(CFG, max_add=2)
    out = run([A([0, 1])], l_rank=rank([14, 12, 13, 0, 1]), L_rank=L_rank, cfg=cfg)
    assert sets(out, "s2") == [[0, 1, 12, 14]]
    assert [r["drug"] for r in out[1].rules] == [14, 12]
    cfg = dataclasses.replace(CFG, max_add=0)
    assert all(p.origin == "s1" for p in run([A([0, 1])], l_rank=rank([14, 12, 13]), L_rank=L_rank, cfg=cfg))


def test_max_add_applies_to_s3_too():
    relation = rel({(9, 0): SYNERGISM, (8, 0): SYNERGISM, (7, 1): SYNERGISM})
    l_rank = rank([8, 7, 9, 0, 1])
    cfg = dataclasses.replace(CFG, max_add=2)
    out = run([A([0, 1])], l_rank=l_rank, relation=relation, cfg=cfg)
    assert sets(out, "s3") == [[0, 1, 7, 8]]
    assert [(r["drug"], r["partner"]) for r in out[1].rules] == [(8, 0), (7, 1)]


def test_max_packages_caps_generated_but_never_s1():
    L_rank = rank([d for d in range(M) if d != 12])
    kw = dict(l_rank=rank([12, 9, 0, 1]), L_rank=L_rank, relation=rel({(9, 0): SYNERGISM}))
    full = run(**kw)
    assert [p.origin for p in full] == ["s1"] * 3 + ["s2"] * 3 + ["s3"] * 3
    out = run(cfg=dataclasses.replace(CFG, max_packages=5), **kw)
    assert len(out) == 5 and sets(out) == sets(full)[:5]
    out = run(cfg=dataclasses.replace(CFG, max_packages=2), **kw)
    assert sets(out) == sets(full)[:3]  # S1 (3 packages) is kept whole


def test_min_size_drops_small_generated_packages():
    s1 = [A([0, 15]), A([0, 1, 3]), A([0, 1, 4])]
    assert [0] in sets(run(s1, cfg=dataclasses.replace(CFG, rare_support=0.34)))
    out = run(s1, cfg=dataclasses.replace(CFG, min_size=2))
    assert sets(out) == [[0, 15], [0, 1, 3], [0, 1, 4]]


def test_degenerate_inputs():
    assert run([]) == []
    # one candidate: every drug is in 100% of S1, so nothing is rare
    out = run([A([3, 1])], l_rank=rank([0, 2]))
    assert sets(out) == [[1, 3]]
    # no relations, no co-occurrence, a single-drug and an empty candidate
    out = run([A([5]), A([], dtype=np.int64)])
    assert sets(out) == [[5], []]
    # no drug ranks high in l
    out = run(cfg=dataclasses.replace(CFG, top_l=0))
    assert all(p.origin == "s1" for p in out)


def test_deterministic():
    rng = np.random.default_rng(1)
    s1 = [rng.choice(M, size=6, replace=False) for _ in range(5)]
    kw = dict(l_rank=ranks_from_scores(rng.random(M)), L_rank=ranks_from_scores(rng.random(M)),
              relation=rel({(int(a), int(b)): int(c) for a, b, c in rng.integers(0, [M, M, 3], size=(60, 3))}),
              co=cooc({(int(a), int(b)): float(p) for a, b, p in zip(*rng.integers(0, M, (2, 60)), rng.random(60))}))
    a, b = run(s1, **kw), run(s1, **kw)
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b]


def _replay(package: list[int], rules: list[dict]) -> list[int]:
    drugs = set(package)
    for r in rules:
        if r["rule"].startswith("delete"):
            assert r["drug"] in drugs
            drugs.discard(r["drug"])
        else:
            assert r["drug"] not in drugs
            drugs.add(r["drug"])
    return sorted(drugs)


def test_random_invariants():
    rng = np.random.default_rng(7)
    m = 60
    cfg = GenerationConfig(rare_support=0.3, low_rank_l=20, top_l=8, unpopular_rank_L=15, high_cooc=0.4,
                           low_cooc=0.1, max_add=3, min_size=2, max_packages=25)
    pairs = rng.integers(0, m, size=(600, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    relation = rel({(int(a), int(b)): int(c) for (a, b), c in zip(pairs, rng.integers(0, 3, len(pairs)))}, m)
    co = cooc({(int(a), int(b)): float(p) for (a, b), p in zip(pairs[::-1], rng.random(len(pairs)))}, m)
    dense_r, dense_p = relation.dense(), co.dense()
    for _ in range(20):
        s1 = [rng.choice(m, size=rng.integers(2, 12), replace=False) for _ in range(rng.integers(1, 11))]
        out = generate_packages(s1, ranks_from_scores(rng.random(m)), ranks_from_scores(rng.random(m)),
                                relation, co, cfg)
        keys = [tuple(p.drugs.tolist()) for p in out]
        assert len(keys) == len(set(keys))
        assert len(out) <= max(cfg.max_packages, len({tuple(sorted(p)) for p in s1}))
        for p in out:
            assert np.all(np.diff(p.drugs) > 0) and p.drugs.dtype == np.int64
            assert _replay(sorted(s1[p.source].tolist()), p.rules) == p.drugs.tolist()
            assert (p.origin == "s1") == (p.rules == [])
            if p.origin == "s3":  # no antagonistic, rarely co-prescribed pair survives
                d = p.drugs
                ant = (dense_r[np.ix_(d, d)] == ANTAGONISM) | (dense_r[np.ix_(d, d)].T == ANTAGONISM)
                low = np.maximum(dense_p[np.ix_(d, d)], dense_p[np.ix_(d, d)].T) < cfg.low_cooc
                assert not (ant & low).any()
            if p.origin != "s1":
                assert len(p.drugs) >= cfg.min_size


def reference(cands, l_rank, L_rank, R: dict, P: dict, cfg: GenerationConfig) -> list[dict]:
    """Plain-Python reading of paper section 6, one package and one drug at a time."""
    s1 = [sorted({int(d) for d in c}) for c in cands]
    if not s1:
        return []
    count = Counter(d for pkg in s1 for d in pkg)
    rare_low = {d for d, c in count.items() if c / len(s1) <= cfg.rare_support + 1e-12 and l_rank[d] >= cfg.low_rank_l}
    high = sorted((d for d in range(len(l_rank)) if l_rank[d] < cfg.top_l), key=lambda d: (l_rank[d], d))
    unpopular = [d for d in high if L_rank[d] >= cfg.unpopular_rank_L]
    labels = lambda a, b: (R.get((a, b), -1), R.get((b, a), -1))  # noqa: E731
    out, seen = [], set()

    def emit(drugs, origin, rules, source):
        key = tuple(sorted(drugs))
        if key in seen or (origin != "s1" and (len(key) < cfg.min_size or len(out) >= cfg.max_packages)):
            return
        seen.add(key)
        out.append({"drugs": list(key), "origin": origin, "rules": rules, "source": source})

    for i, pkg in enumerate(s1):
        emit(pkg, "s1", [], i)
    s2 = []
    for pkg in s1:
        adds = [d for d in unpopular if d not in pkg][: cfg.max_add]
        rules = [{"rule": "delete_rare", "drug": d} for d in pkg if d in rare_low]
        s2.append(({d for d in pkg if d not in rare_low} | set(adds),
                   rules + [{"rule": "add_unpopular", "drug": d} for d in adds]))
    for i, (q, rules) in enumerate(s2):
        emit(q, "s2", rules, i)
    for i, (q, rules) in enumerate(s2):
        rules, added = list(rules), []
        partners = sorted(q, key=lambda d: (l_rank[d], d))
        for d in high:
            if d in q or len(added) >= cfg.max_add:
                continue
            syn = [v for v in partners if SYNERGISM in labels(d, v)]
            co = [v for v in partners if P.get((v, d), 0.0) > cfg.high_cooc]
            if syn:
                rules.append({"rule": "add_synergism", "drug": d, "partner": syn[0]})
            elif co:
                rules.append({"rule": "add_cooccurrence", "drug": d, "partner": max(co, key=lambda v: P[(v, d)])})
            else:
                continue
            added.append(d)
        kept = []
        for d in sorted(q | set(added), key=lambda d: (l_rank[d], d)):
            against = [k for k in kept if ANTAGONISM in labels(d, k)
                       and max(P.get((d, k), 0.0), P.get((k, d), 0.0)) < cfg.low_cooc]
            if against:
                rules.append({"rule": "delete_antagonism", "drug": d, "partner": against[0]})
            else:
                kept.append(d)
        emit(kept, "s3", rules, i)
    return out


def test_matches_pure_python_reference():
    rng = np.random.default_rng(11)
    for _ in range(60):
        m = int(rng.integers(4, 40))
        keys = rng.integers(0, m, size=(int(rng.integers(0, m * m)), 2))
        R = {(int(a), int(b)): int(c) for (a, b), c in zip(keys, rng.integers(0, 3, len(keys)))}
        P = {(int(a), int(b)): int(q) / 8 for (a, b), q in zip(keys[::-1], rng.integers(0, 9, len(keys)))}
        top_l = int(rng.integers(0, m))
        high = int(rng.integers(1, 9)) / 8
        cfg = GenerationConfig(rare_support=float(rng.random()), top_l=top_l,
                               low_rank_l=int(rng.integers(top_l, m + 1)), unpopular_rank_L=int(rng.integers(0, m)), high_cooc=high,
                               low_cooc=int(rng.integers(0, 9)) / 8 * high, max_add=int(rng.integers(0, 4)),
                               min_size=int(rng.integers(1, 4)), max_packages=int(rng.integers(1, 30)))
        cands = [rng.integers(0, m, int(rng.integers(0, 12))) for _ in range(int(rng.integers(0, 11)))]
        l_rank = ranks_from_scores(rng.integers(0, 4, m))  # many ties
        L_rank = ranks_from_scores(rng.random(m))
        got = generate_packages(cands, l_rank, L_rank, rel(R, m), cooc(P, m), cfg)
        assert [p.to_dict() for p in got] == reference(cands, l_rank.tolist(), L_rank.tolist(), R, P, cfg)


def test_batch_and_flatten_match_single_calls():
    l_rank = np.stack([rank([0, 9, 1]), rank([12, 0])])
    L_rank = rank([d for d in range(M) if d != 12])
    relation = rel({(9, 0): SYNERGISM})
    cands = [S1, [A([0, 1]), A([2, 3])]]
    batch = generate_batch(cands, l_rank, L_rank, relation, cooc(), CFG)
    single = [generate_packages(c, r, L_rank, relation, cooc(), CFG) for c, r in zip(cands, l_rank)]
    assert [[p.to_dict() for p in s] for s in batch] == [[p.to_dict() for p in s] for s in single]
    owner, csr = flatten(batch)
    assert owner.tolist() == [0] * len(batch[0]) + [1] * len(batch[1])
    flat = [g.drugs.tolist() for s in batch for g in s]
    assert [csr.indices[csr.indptr[i]:csr.indptr[i + 1]].tolist() for i in range(len(flat))] == flat
    owner, csr = flatten([])
    assert owner.size == 0 and csr.indptr.tolist() == [0]


def test_ranks_from_scores():
    np.testing.assert_array_equal(ranks_from_scores([0.1, 0.9, 0.5, 0.9]), [3, 0, 2, 1])  # tie: smaller id
    np.testing.assert_array_equal(ranks_from_scores([[1, 2], [2, 1]]), [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="row 1"):
        ranks_from_scores([[1.0, 2.0], [np.nan, 0.0]])


def test_bad_input_names_the_record_and_field():
    with pytest.raises(ValueError, match=r"candidates\[1\].*out of range"):
        run([A([0, 1]), A([2, M])])
    with pytest.raises(ValueError, match=r"candidates\[0\].*non-negative"):
        run([A([-1, 1])])
    with pytest.raises(ValueError, match="l_rank.*shape"):
        run(l_rank=np.zeros(M - 1, np.int64))
    with pytest.raises(ValueError, match="L_rank.*integers"):
        run(L_rank=np.zeros(M, np.float32))
    with pytest.raises(ValueError, match="cooc"):
        run(co=cooc(m=M + 1))
    with pytest.raises(ValueError, match="patient row 1"):
        generate_batch([S1, [A([M])]], np.stack([L_LIST, L_LIST]), L_POP, rel(), cooc(), CFG)


@pytest.mark.parametrize("field,value", [("rare_support", 1.5), ("low_rank_l", 2), ("low_cooc", 0.9),
                                         ("max_add", -1), ("min_size", 0), ("max_packages", 0)])
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=f"GenerationConfig.{field}"):
        dataclasses.replace(CFG, **{field: value})
