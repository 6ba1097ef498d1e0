"""Drug packages of the synthetic generator (:func:`_packages`).

Each record's package is built towards a target size (:func:`_targets`): background drugs,
whole protocol bundles (:func:`_choose_bundles`), then individual drugs (:func:`_fill`),
with the avoidance rules applied (:func:`_avoid`), in memory-bounded chunks
(:func:`_chunk_packages`).
"""

from __future__ import annotations

import numpy as np

from dpr_dist.data.synth.knobs import VULNERABLE, SynthKnobs
from dpr_dist.data.synth.plan import _Plan


def _entries(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(row, col)`` of the True cells of a sparse 2-D bool array, sorted by row then col."""
    packed = np.packbits(mask, axis=1)
    i, j = np.nonzero(packed)
    k, b = np.nonzero(np.unpackbits(packed[i, j][:, None], axis=1))
    return i[k], j[k] * 8 + b


def _put(src: np.ndarray, drugs: np.ndarray, mask: np.ndarray, code: int) -> None:
    """Mark ``drugs[r, j]`` present in record ``r`` with source ``code`` where ``mask``."""
    mask = mask & (drugs >= 0)
    rows = np.broadcast_to(np.arange(drugs.shape[0])[:, None], drugs.shape)
    src[rows[mask], drugs[mask]] = code


def _fill(src: np.ndarray, need: np.ndarray, partner_share: np.ndarray, plan: _Plan, code: int,
          rng: np.random.Generator) -> None:
    """Add ``need[r]`` new drugs to each record ``r``: synergy partners of a drug already in
    the package (share ``partner_share[r]`` of the draws) or popularity draws."""
    n, D = src.shape
    present = src != 255
    count = present.sum(1)
    need = np.minimum(need, D - count)
    m = 2 * need + 3
    r = np.repeat(np.arange(n), m)
    d = rng.choice(D, len(r), p=plan.pop)
    partner = (rng.random(len(r)) < partner_share[r]) & (count[r] > 0)
    if partner.any() and len(plan.syn_idx):
        _, dd = _entries(present)
        rp = r[partner]
        anchor = dd[np.concatenate([[0], np.cumsum(count)])[rp] + (rng.random(len(rp)) * count[rp]).astype(np.int64)]
        deg = plan.syn_ptr[anchor + 1] - plan.syn_ptr[anchor]
        pick = np.minimum(plan.syn_ptr[anchor] + (rng.random(len(rp)) * deg).astype(np.int64), len(plan.syn_idx) - 1)
        d[partner] = np.where(deg > 0, plan.syn_idx[pick], d[partner])
    first = np.zeros(len(r), bool)
    first[np.unique(r * D + d, return_index=True)[1]] = True
    new = first & ~present[r, d]
    before = np.concatenate([[0], np.cumsum(new)])
    rank = before[1:] - 1 - before[np.concatenate([[0], np.cumsum(m)])[:-1]][r]
    keep = new & (rank < need[r])
    src[r[keep], d[keep]] = code


def _avoid(src: np.ndarray, member: np.ndarray, p_ant: np.ndarray, plan: _Plan, knobs: SynthKnobs,
           rng: np.random.Generator, new: int | None = None) -> None:
    """Drop contraindicated drugs, condition-avoided pairs and antagonistic pairs.

    ``member`` is ``[n, C]`` (all False on hard records); ``p_ant`` ``[n]`` is each record's
    probability of avoiding an antagonistic pair. With ``new`` set, only conflicts
    involving a drug of that source code are resolved (the refill round).
    """
    n = src.shape[0]
    fresh = (lambda x: src[:, x] == new) if new is not None else (lambda x: src[:, x] != 255)
    for c, drugs in enumerate(plan.contra):
        for x in drugs[drugs >= 0]:
            src[member[:, c] & fresh(x) & (rng.random(n) < knobs.avoid_contra), x] = 255
    for c, a, b in plan.rules:
        hit = member[:, c] & (src[:, a] != 255) & (src[:, b] != 255) & (fresh(a) | fresh(b))
        src[hit & (rng.random(n) < knobs.avoid_rule), b] = 255
    if not len(plan.ant):
        return
    # records packed 8 per byte: [D, ceil(n / 8)]
    have = np.packbits((src != 255) & member.any(1)[:, None], axis=0).T.copy()
    a, b = plan.ant[:, 0], plan.ant[:, 1]
    both = have[a] & have[b]
    if new is not None:
        fresh_bits = np.packbits(src == new, axis=0).T.copy()
        both &= fresh_bits[a] | fresh_bits[b]
    pi, bi = np.nonzero(both)
    k, j = np.nonzero(np.unpackbits(both[pi, bi][:, None], axis=1))
    pi, ri = pi[k], bi[k] * 8 + j
    act = rng.random(len(pi)) < p_ant[ri]
    pi, ri = pi[act], ri[act]
    a, b = a[pi], b[pi]
    ca, cb = src[ri, a], src[ri, b]
    drop_b = (cb > ca) | ((cb == ca) & (rng.random(len(pi)) < 0.5))
    src[ri, np.where(drop_b, b, a)] = 255


def _choose_bundles(conds: np.ndarray, surgery: np.ndarray, budget: np.ndarray, live: np.ndarray,
                    p_ant: np.ndarray, plan: _Plan, knobs: SynthKnobs, rng: np.random.Generator) -> np.ndarray:
    """Whole bundles for each record until the budget of drugs is spent.

    The candidates are the bundles of the record's conditions (the second condition's at
    0.7 weight) and, on surgical stays, the surgery bundles. They are taken in a random
    order with probabilities proportional to their weights (Gumbel keys; the primary
    first-line bundle first with probability ``core_prob``, then the second condition's
    first-line and second-line bundles with ``second_core_prob``, then a surgery bundle with
    ``surgery_drug_prob``); a bundle is taken while half of it still fits in the budget,
    and skipped (with probability ``p_ant``) when it conflicts with one already taken.

    Args:
        conds: ``[n, 2]`` condition ids, ``-1`` for none.
        surgery: ``[n]`` bool.
        budget: ``[n]`` drugs left for bundles.
        live: ``[n]`` bool, records that get bundles (not hard).
        p_ant: ``[n]`` probability of avoiding an antagonistic pair (:func:`_antagonism_avoidance`).

    Returns:
        ``[n, NB]`` bool, the bundles taken.
    """
    n, nb = len(conds), len(plan.bundle_size)
    rows = np.arange(n)
    has2 = (conds[:, 1] >= 0)[:, None]
    surg_ids = np.flatnonzero(plan.surgical)
    sg = np.broadcast_to(surg_ids, (n, len(surg_ids)))
    cand = np.concatenate([plan.cond_bundles[conds[:, 0].clip(0)],
                           np.where(has2, plan.cond_bundles[conds[:, 1].clip(0)], -1),
                           np.where(surgery[:, None], sg, -1)], 1)
    weight = np.concatenate([plan.cond_weight[conds[:, 0].clip(0)], 0.7 * plan.cond_weight[conds[:, 1].clip(0)],
                             np.ones(sg.shape)], 1)
    with np.errstate(divide="ignore"):
        key = np.log(weight) + rng.gumbel(size=cand.shape)
    key[:, 0] = np.where(rng.random(n) < knobs.core_prob, 1e9, key[:, 0])
    if knobs.second_core_prob > 0:  # guarded: the default draws no extra random numbers
        j = plan.cond_bundles.shape[1]  # the second condition's first-line bundle, then its second-line one
        core2 = has2[:, 0] & (rng.random(n) < knobs.second_core_prob)
        key[:, j] = np.where(core2, 5e8, key[:, j])
        if j > 1:  # conditions with shared bundles: the second-line one exists
            key[:, j + 1] = np.where(core2, 4e8, key[:, j + 1])
    if len(surg_ids):
        j = plan.cond_bundles.shape[1] * 2 + rng.integers(0, len(surg_ids), n)
        key[rows, j] = np.where(rng.random(n) < knobs.surgery_drug_prob, 1e8, key[rows, j])
    key[(cand < 0) | ~live[:, None]] = -np.inf
    order = np.argsort(-key, 1, kind="stable")
    cand = np.take_along_axis(cand, order, 1)
    valid = np.take_along_axis(key, order, 1) > -np.inf
    taken = np.zeros((n, nb), bool)
    spent = np.zeros(n)
    has_conflict = plan.conflict.any()
    for j in range(cand.shape[1]):
        b = cand[:, j].clip(0)
        size = plan.bundle_size[b]
        ok = valid[:, j] & ~taken[rows, b] & (spent + size / 2 < budget)
        if has_conflict:
            ok &= ~((taken & plan.conflict[b]).any(1) & (rng.random(n) < p_ant))
        taken[rows[ok], b[ok]] = True
        spent += size * ok
    return taken


def _chunk_packages(conds: np.ndarray, surgery: np.ndarray, target: np.ndarray, hard: np.ndarray, p_ant: np.ndarray,
                    plan: _Plan, knobs: SynthKnobs, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Packages of ``n`` records as ``(record, drug)`` entries sorted by record.

    ``target`` ``[n]`` is the size each package is built towards: background drugs, then
    whole bundles for ``1 - individual_share`` of it, then individual drugs (extended
    regimen, synergy partners, popular drugs) up to it. ``src`` is a ``[n, D]`` matrix of
    where a drug came from (0 condition bundle, 1 surgery bundle, 2 background, 3 extended
    regimen, 4 partner or random, 5 refill; 255 absent); on a conflict the drug from the
    weaker source goes, so bundles stay whole. A refill round restores the sizes the
    avoidance rules cut, and is checked against the same rules. Hard records get
    ``target`` random drugs.
    """
    D, n = len(plan.names), len(conds)
    target = np.asarray(target, np.int64)
    src = np.full((n, D), 255, np.uint8)
    live = ~hard
    bg = np.broadcast_to(plan.background, (n, len(plan.background)))
    _put(src, bg, (rng.random(bg.shape) < plan.bg_prob) & live[:, None], 2)
    budget = target * (1.0 - knobs.individual_share) - (src != 255).sum(1)
    r, b = np.nonzero(_choose_bundles(conds, surgery, budget, live, p_ant, plan, knobs, rng))
    drugs = plan.bundles[b]
    code = np.broadcast_to(np.where(plan.surgical[b], 1, 0)[:, None], drugs.shape)
    keep = drugs >= 0
    lose = np.flatnonzero(rng.random(len(b)) < knobs.bundle_drop)  # a bundle given without one drug
    keep[lose, (rng.random(len(lose)) * plan.bundle_size[b[lose]]).astype(np.int64)] = False
    src[np.broadcast_to(r[:, None], drugs.shape)[keep], drugs[keep]] = code[keep]

    # individual drugs: the conditions' extended regimens, then partners and popular drugs
    need = np.maximum(0, target - (src != 255).sum(1))
    ext = np.concatenate([plan.exts[conds[:, 0].clip(0)],
                          np.where((conds[:, 1] >= 0)[:, None], plan.exts[conds[:, 1].clip(0)], -1)], 1)
    ok = (ext >= 0) & (src[np.arange(n)[:, None], ext.clip(0)] == 255) & live[:, None]
    rank = np.argsort(np.argsort(np.where(ok, rng.random(ext.shape), 2.0), 1), 1)
    _put(src, ext, ok & (rank < rng.binomial(need, knobs.extended_prob)[:, None]), 3)
    share = np.where(hard, 0.0, knobs.partner_share)
    _fill(src, np.maximum(0, target - (src != 255).sum(1)), share, plan, 4, rng)
    member = (conds[:, :, None] == np.arange(len(plan.conds))).any(1) & live[:, None]
    _avoid(src, member, p_ant, plan, knobs, rng)
    _fill(src, np.maximum(0, target - (src != 255).sum(1)), share, plan, 5, rng)
    _avoid(src, member, p_ant, plan, knobs, rng, new=5)

    # at least two distinct drugs: top up with background, then popular drugs
    present = src != 255
    count = present.sum(1)
    for x in np.concatenate([plan.background, np.argsort(-plan.pop)[:2]]):
        add = (count < 2) & ~present[:, x]
        present[add, x] = True
        count += add
    return _entries(present)


def _vulnerable(rec: dict[str, np.ndarray], plan: _Plan) -> np.ndarray:
    """``[R]`` bool: the stay's patient is 65 or older or has a condition of :data:`VULNERABLE`."""
    ids = [i for i, c in enumerate(plan.conds) if c.name in VULNERABLE]
    return (rec["age"] >= 65) | np.isin(rec["conds"], ids).any(1)


def _antagonism_avoidance(rec: dict[str, np.ndarray], plan: _Plan, knobs: SynthKnobs) -> np.ndarray:
    """``[R]`` probability that the doctor avoids an antagonistic pair for each stay:
    ``avoid_antagonism`` for the vulnerable, ``* (1 - antagonism_tolerance)`` for the rest."""
    tolerant = knobs.avoid_antagonism * (1.0 - knobs.antagonism_tolerance)
    return np.where(_vulnerable(rec, plan), knobs.avoid_antagonism, tolerant)


def _targets(rec: dict[str, np.ndarray], hard: np.ndarray, plan: _Plan, knobs: SynthKnobs, mean_package: float,
             rng: np.random.Generator) -> np.ndarray:
    """``[R]`` target package sizes: lognormal, ``exp(size_sigma * (0.85 * severity + 0.53 *
    noise))`` (the doctor, the ward), surgical stays 25% larger.

    The scale is calibrated on a pilot of up to 2,048 records so that the realized mean
    package size is ``mean_package`` (bundles are whole, so the sizes overshoot a little).
    Hard records get ``max(2, Poisson(mean_package))``.
    """
    D = len(plan.names)
    z = 0.85 * rec["severity"].astype(np.float64) + 0.53 * rng.normal(size=len(hard))
    rel = np.exp(knobs.size_sigma * z) * (1.0 + 0.25 * rec["surgery"])
    live = np.flatnonzero(~hard)
    rel /= rel[live].mean() if len(live) else 1.0
    pilot = live[:2048]
    seed = int(rng.integers(2**63))
    scale = 1.0
    for _ in range(3 if len(pilot) else 0):
        t = np.clip(np.rint(mean_package * scale * rel[pilot]), 1, D)
        _, d = _chunk_packages(rec["conds"][pilot], rec["surgery"][pilot], t, np.zeros(len(pilot), bool),
                               rec["p_ant"][pilot], plan, knobs, np.random.default_rng(seed))
        scale *= mean_package / max(len(d) / len(pilot), 1e-9)
    target = np.clip(np.rint(mean_package * scale * rel), 1, D)
    return np.where(hard, np.clip(rng.poisson(mean_package, len(hard)), 2, D), target).astype(np.int64)


def _packages(rec: dict[str, np.ndarray], plan: _Plan, knobs: SynthKnobs, mean_package: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All packages, in chunks bounded in memory. Returns ``(offsets [R+1], drugs [N], hard [R])``."""
    n, D = len(rec["age"]), len(plan.names)
    rec = {**rec, "p_ant": _antagonism_avoidance(rec, plan, knobs)}
    hard = rng.random(n) < knobs.hard_fraction
    target = _targets(rec, hard, plan, knobs, mean_package, rng)
    chunk = int(np.clip(2**25 // max(D, len(plan.ant), 1), 256, 16384))
    rs, ds = [], []
    for k, s in enumerate(range(0, n, chunk)):
        e = min(n, s + chunk)
        sub = np.random.default_rng([int(rng.integers(2**63)), k])
        r, d = _chunk_packages(rec["conds"][s:e], rec["surgery"][s:e], target[s:e], hard[s:e], rec["p_ant"][s:e],
                               plan, knobs, sub)
        rs.append(r + s)
        ds.append(d)
    r, d = np.concatenate(rs), np.concatenate(ds)
    # every catalog drug is prescribed somewhere, when that takes few extra prescriptions
    missing = np.flatnonzero(np.bincount(d, minlength=D) == 0)
    if 0 < len(missing) <= 0.02 * len(d):
        r = np.concatenate([r, rng.integers(0, n, len(missing))])
        d = np.concatenate([d, missing])
    order = np.argsort(r + rng.random(len(r)), kind="stable")  # random order inside a record
    r, d = r[order], d[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=n))])
    return offsets, d, hard
