"""The drug-level plan shared by every record (:class:`_Plan`, :func:`_make_plan`).

Conditions, drug names, protocol bundles, extended regimens, rules, contraindications and
the interaction structure among aligned drugs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpr_dist.data.synth.knobs import SynthKnobs
from dpr_dist.data.synth.pairs import _clash_pairs, _pairs_within, _sample_pairs
from dpr_dist.data.synth.vocab import (
    _BODY_PARTS, _GENERIC_STEMS, _GENERIC_SYMPTOMS, _LINKS, _ONSETS, _SURGERY_STEMS, _VOWELS, CONDITIONS, LABELS,
    LABS, PAPER_ALIGNED, PAPER_DDI_ROWS, Condition,
)


@dataclass(eq=False)
class _Plan:
    """Drug-level structure shared by every record."""

    conds: list[Condition]
    names: list[str]
    aligned: np.ndarray  # [D] bool, has rows in the interaction table
    background: np.ndarray  # [B] drug ids
    bg_prob: np.ndarray  # [B]
    pop: np.ndarray  # [D] draw probabilities of random drugs (0 on background, low on bundles)
    bundles: np.ndarray  # [NB, M] drug ids, -1 padded; disjoint
    bundle_size: np.ndarray  # [NB]
    surgical: np.ndarray  # [NB] bool, a surgery bundle
    first: np.ndarray  # [C] first-line bundle of each condition
    cond_bundles: np.ndarray  # [C, L] bundles a condition uses, first-line first, -1 padded
    cond_weight: np.ndarray  # [C, L] their choice weights
    conflict: np.ndarray  # [NB, NB] bool, the two bundles hold an antagonistic pair
    exts: np.ndarray  # [C, K] extended regimen (individual drugs), -1 padded
    contra: np.ndarray  # [C, Kc], -1 padded
    rules: np.ndarray  # [Q, 3] (condition, a, b): drop b
    ddi: np.ndarray  # [E, 3] (a, b, label) directed rows
    ant: np.ndarray  # [P, 2] unordered antagonistic pairs
    clashes: np.ndarray  # [K, 4] (condition, condition, a, b): antagonism between first-line bundles
    syn_ptr: np.ndarray  # CSR of synergy partners outside the bundles (undirected)
    syn_idx: np.ndarray
    compat: np.ndarray  # [C, C] bool, may co-occur in one patient


def _conditions(n: int, rng: np.random.Generator) -> list[Condition]:
    """The first ``n`` named conditions, then generic ones with random labs and phrases."""
    out = list(CONDITIONS[:n])
    phrases = [f"{s} of the {b}" for b in _BODY_PARTS for s in _GENERIC_SYMPTOMS]
    order = rng.permutation(len(phrases))
    for k in range(len(out), n):
        labs = rng.choice(len(LABS), 2, replace=False)
        lab = tuple((LABS[i][0], "low" if LABS[i][1] > 0 and rng.random() < 0.4 else "high") for i in labs)
        words = tuple(phrases[order[(3 * (k - len(CONDITIONS)) + j) % len(phrases)]] for j in range(3))
        out.append(Condition(f"condition {k + 1}", 0.5, (50, 20, 0, 100), 0.5, lab, words, _GENERIC_STEMS))
    return out


def _names(stems: list[tuple[str, ...]], rng: np.random.Generator) -> list[str]:
    """Unique pronounceable names, one per drug, ending in one of its stems."""
    used: set[str] = set()
    names = []
    for st in stems:
        tries = 0
        while True:
            syl = 1 + (tries > 20) + (rng.random() < 0.7)
            parts = [_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] for _ in range(syl)]
            stem = st[rng.integers(len(st))]
            link = _LINKS[rng.integers(len(_LINKS))] if stem[0] in "aeiou" else ""
            name = ("".join(parts) + link + stem).capitalize()
            tries += 1
            if name not in used:
                break
        used.add(name)
        names.append(name)
    return names


@dataclass(eq=False)
class _Bundles:
    """Protocol bundles and which condition uses which."""

    drugs: np.ndarray  # [NB, M] drug ids, -1 padded; disjoint
    size: np.ndarray  # [NB]
    surgical: np.ndarray  # [NB] bool
    first: np.ndarray  # [C] first-line bundle of each condition
    cond: np.ndarray  # [C, L] bundles of each condition, first-line first
    weight: np.ndarray  # [C, L] choice weights


def _make_bundles(drugs: int, n_cond: int, aligned_pool: np.ndarray, others: np.ndarray, mean_package: float,
                  rng: np.random.Generator) -> _Bundles:
    """Disjoint protocol bundles out of the non-background drugs.

    About 70% of the non-background catalog goes into bundles of 3-6 drugs (fewer for small
    packages), at most ``4 * C + 3`` bundles, ordered surgical (up to 3), first-line (one
    per condition, shared round-robin when there are fewer bundles than conditions) and
    shared. Aligned drugs fill them first (up to 85% of the aligned drugs): two per bundle,
    then slot ``j`` of every bundle before slot ``j + 1`` of any, so that each bundle is
    built around a synergistic pair. Each condition uses its first-line bundle (weight 2)
    and ``max(2, 2 * shared / C)`` shared ones (weights 0.5-1.5), the least used first.
    """
    hi = int(np.clip(round(0.6 * mean_package), 2, 6))
    lo = min(3, hi)
    avail = len(aligned_pool) + len(others)
    nb = int(np.clip(0.7 * avail // ((lo + hi) / 2), 2, 4 * n_cond + 3))
    sizes = rng.integers(lo, hi + 1, nb)
    while sizes.sum() > 0.85 * avail and sizes.max() > 2:
        sizes[np.argmax(sizes)] -= 1
    n_surg = min(3, nb // 6)
    n_first = min(n_cond, nb - n_surg)

    width = int(sizes.max())
    slot_b, slot_j = np.meshgrid(np.arange(nb), np.arange(width))
    used_slot = slot_j < sizes[slot_b]
    order = np.argsort(np.where(slot_j < 2, 2 * slot_b + slot_j, nb * (slot_j + 2) + slot_b)[used_slot])
    cap = max(int(0.85 * len(aligned_pool)), min(2, len(aligned_pool)))
    pool = np.concatenate([aligned_pool[:cap], rng.permutation(others), aligned_pool[cap:]])
    bundles = np.full((nb, width), -1, np.int64)
    bundles[slot_b[used_slot][order], slot_j[used_slot][order]] = pool[: used_slot.sum()]

    first = n_surg + np.arange(n_cond) % n_first
    shared = np.arange(n_surg + n_first, nb)
    k_sh = min(len(shared), max(2, round(2 * len(shared) / n_cond)))
    cond = np.full((n_cond, 1 + k_sh), -1, np.int64)
    cond[:, 0] = first
    weight = np.ones((n_cond, 1 + k_sh))
    weight[:, 0] = 2.0
    uses = np.zeros(len(shared))
    for ci in range(n_cond):
        pick = np.argsort(uses + rng.random(len(shared)), kind="stable")[:k_sh]
        uses[pick] += 1
        cond[ci, 1:] = shared[pick]
        weight[ci, 1:] = rng.uniform(0.5, 1.5, k_sh)
    return _Bundles(bundles, sizes, np.arange(nb) < n_surg, first, cond, weight)


def _make_plan(drugs: int, n_cond: int, mean_package: float, knobs: SynthKnobs,
               rng: np.random.Generator) -> _Plan:
    """Roles of the drugs, bundles, rules and the interaction structure."""
    conds = _conditions(n_cond, rng)
    C, D = len(conds), drugs
    lo = np.array([c.age[2] for c in conds])
    hi = np.array([c.age[3] for c in conds])
    fem_only = np.array([c.female >= 1.0 for c in conds])
    compat = (np.minimum(hi[:, None], hi[None]) - np.maximum(lo[:, None], lo[None]) >= 1.0)
    compat &= ~np.eye(C, dtype=bool)
    compat &= ~(fem_only[:, None] & (np.array([c.female <= 0.0 for c in conds]))[None])

    n_aligned = int(np.clip(round(knobs.aligned_fraction * D), 2, D))
    n_bg = int(np.clip(round(mean_package / 4.5), 1, max(1, D // 10)))
    perm = rng.permutation(D)
    background, rest = perm[:n_bg], perm[n_bg:]
    aligned_pool = rest[: max(1, n_aligned - n_bg)]
    others = rest[len(aligned_pool):]
    aligned = np.zeros(D, bool)
    aligned[background] = True
    aligned[aligned_pool] = True

    bun = _make_bundles(D, C, aligned_pool, others, mean_package, rng)
    bundles, surgical, first, cond_bundles = bun.drugs, bun.surgical, bun.first, bun.cond
    nb = len(bun.size)
    in_bundle = np.zeros(D, bool)
    in_bundle[bundles[bundles >= 0]] = True
    free = np.flatnonzero(~in_bundle & ~np.isin(np.arange(D), background))
    k_ext = int(np.clip(round(0.4 * mean_package), 2, max(2, len(free))))
    exts = np.full((C, k_ext), -1, np.int64)
    for ci in range(C):
        pick = rng.choice(free, min(k_ext, len(free)), replace=False)
        exts[ci, : len(pick)] = pick

    ranks = rng.permutation(D)
    pop = 1.0 / (ranks + 8.0) ** 1.05
    pop[background] = 0.0
    pop[in_bundle] *= 0.02  # bundle drugs come with their bundle, rarely alone
    pop /= pop.sum()
    bg_prob = np.sort(rng.uniform(0.35, 0.9, n_bg))[::-1]

    # rules: an aligned pair of another condition's first-line bundle, dropped for this one
    def aligned_members(b: int) -> np.ndarray:
        row = bundles[b]
        return row[(row >= 0) & aligned[row.clip(0)]]

    rules, used = [], {}
    names = [x.name for x in conds]
    for ci, c in enumerate(conds):
        t = names.index(c.avoid_with) if c.avoid_with in names else -1
        if t < 0 or not compat[ci, t]:
            cand = np.flatnonzero(compat[ci])
            if not len(cand):
                continue
            t = int(cand[np.argmax([conds[j].weight for j in cand])])
        members = aligned_members(first[t])
        if len(members) < 2 or first[t] in cond_bundles[ci]:
            continue
        j = used.get(t, 0) % (len(members) // 2)
        used[t] = used.get(t, 0) + 1
        rules.append((ci, members[2 * j], members[2 * j + 1]))
    rules_arr = np.array(rules, np.int64).reshape(-1, 3)

    # contraindications: common drugs (other first-line bundles, popular ones) avoided for a condition
    top = np.argsort(-pop)[: max(4, D // 20)]
    contra = np.full((C, max([c.contra for c in conds] + [1])), -1, np.int64)
    for ci, c in enumerate(conds):
        if not c.contra:
            continue
        own = bundles[cond_bundles[ci][cond_bundles[ci] >= 0]].ravel()
        cand = np.union1d(bundles[first[compat[ci]]].ravel(), top)
        cand = np.setdiff1d(cand, np.concatenate([[-1], own, background, rules_arr[rules_arr[:, 0] == ci, 1:].ravel()]))
        if len(cand):
            contra[ci, : min(c.contra, len(cand))] = rng.choice(cand, min(c.contra, len(cand)), replace=False)

    # interaction structure among aligned drugs
    al = np.flatnonzero(aligned)
    nA = len(al)
    cap = 0.15 * nA * (nA - 1)  # paper: 10% of the ordered pairs are labelled
    scale = min(nA / PAPER_ALIGNED, cap / sum(PAPER_DDI_ROWS.values()))
    two_way = {"none": 0.5, "synergism": 0.35, "antagonism": 0.25}  # share of pairs with both directions
    want = {k: int(round(PAPER_DDI_ROWS[k] * scale / (1 + two_way[k]))) for k in LABELS}
    syn_forced = _pairs_within([aligned_members(b) for b in range(nb)])
    taken = {(int(a), int(b)) for a, b in syn_forced}  # bundle pairs never get another label
    # the bundles of one condition are designed to be combinable: no antagonism among them
    listed = [bundles[row[row >= 0]].ravel() for row in cond_bundles]
    combinable = taken | {(int(a), int(b)) for a, b in _pairs_within([*listed, bundles[surgical].ravel()])}
    clashes = np.zeros((0, 4), np.int64)
    if knobs.bundle_clash > 0:  # guarded: the default draws no extra random numbers
        clashes = _clash_pairs(bundles, aligned, first, compat, combinable, knobs.bundle_clash, rng)
        want["antagonism"] = max(0, want["antagonism"] - len(clashes))
    hot = np.union1d(bundles[(bundles >= 0) & aligned[bundles.clip(0)]], np.intersect1d(top, al))
    n_hot = int(min(0.3 * want["antagonism"], 0.03 * len(hot) * (len(hot) - 1) / 2))
    ant = _sample_pairs(hot, n_hot, combinable, rng)
    ant = np.concatenate([clashes[:, 2:], ant, _sample_pairs(al, want["antagonism"] - len(ant), combinable, rng)])
    taken |= {(int(a), int(b)) for a, b in ant}
    syn = np.concatenate([syn_forced, _sample_pairs(al, want["synergism"] - len(syn_forced), taken, rng)])
    none = _sample_pairs(al, want["none"], taken, rng)
    rows = []
    for lab, pairs in enumerate((none, syn, ant)):
        flip = rng.random(len(pairs)) < 0.5
        a = np.where(flip, pairs[:, 1], pairs[:, 0])
        b = np.where(flip, pairs[:, 0], pairs[:, 1])
        rev = rng.random(len(pairs)) < two_way[LABELS[lab]]
        rows.append(np.stack([np.concatenate([a, b[rev]]), np.concatenate([b, a[rev]]),
                              np.full(len(a) + rev.sum(), lab)], 1))
    ddi = np.concatenate(rows).astype(np.int64)
    ddi = ddi[rng.permutation(len(ddi))]
    und = np.concatenate([syn, syn[:, ::-1]])
    und = und[~in_bundle[und[:, 1]]]  # individual partners only: bundle drugs come with their bundle
    order = np.argsort(und[:, 0], kind="stable")
    syn_ptr = np.concatenate([[0], np.cumsum(np.bincount(und[:, 0], minlength=D))])
    bundle_of = np.full(D, -1, np.int64)
    bundle_of[bundles[bundles >= 0]] = np.nonzero(bundles >= 0)[0]
    ba, bb = bundle_of[ant[:, 0]], bundle_of[ant[:, 1]]
    clash = (ba >= 0) & (bb >= 0)
    conflict = np.zeros((nb, nb), bool)
    conflict[ba[clash], bb[clash]] = conflict[bb[clash], ba[clash]] = True

    stems = [_GENERIC_STEMS] * D
    for ci in np.unique(first, return_index=True)[1]:  # the first condition of each first-line bundle
        for d in bundles[first[ci]][bundles[first[ci]] >= 0]:
            stems[d] = conds[ci].stems
    for d in bundles[surgical][bundles[surgical] >= 0]:
        stems[d] = _SURGERY_STEMS
    in_ddi = np.zeros(D, bool)
    in_ddi[ddi[:, :2].ravel()] = True
    return _Plan(conds, _names(stems, rng), in_ddi, background, bg_prob, pop, bundles, bun.size, surgical, first,
                 cond_bundles, bun.weight, conflict, exts, contra, rules_arr, ddi, ant, clashes, syn_ptr,
                 und[order, 1], compat)
