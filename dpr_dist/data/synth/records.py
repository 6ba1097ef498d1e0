"""Patients and stays of the synthetic generator: conditions, demographics, admit times and
the latent severity of each stay (:func:`_records`)."""

from __future__ import annotations

import numpy as np

from dpr_dist.data.synth.knobs import SynthKnobs
from dpr_dist.data.synth.plan import _Plan


def _records(n: int, plan: _Plan, knobs: SynthKnobs, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Patients, their latent conditions, demographics and the latent severity of each stay
    (standardized; elderly, comorbid and acute conditions are more severe, and so are their
    stays surgical more often); one entry per stay, by admit time."""
    conds = plan.conds
    C = len(conds)
    n_pat = int(np.clip(round(n / knobs.records_per_patient), 1, n))
    w = rng.gamma(0.5, size=n_pat) + 1e-12
    per = 1 + rng.multinomial(n - n_pat, w / w.sum())
    weight = np.array([c.weight for c in conds])
    c1 = rng.choice(C, n_pat, p=weight / weight.sum())
    cdf = np.cumsum((weight[None] * plan.compat)[c1], 1)
    tot = cdf[:, -1]
    c2 = np.argmax(rng.random(n_pat)[:, None] * tot[:, None] < cdf, 1)
    has2 = (rng.random(n_pat) < knobs.second_condition) & (tot > 0)
    c2 = np.where(has2, c2, -1)

    age_p = np.array([c.age for c in conds], np.float64)
    lo = np.where(has2, np.maximum(age_p[c1, 2], age_p[c2, 2]), age_p[c1, 2])
    hi = np.where(has2, np.minimum(age_p[c1, 3], age_p[c2, 3]), age_p[c1, 3])
    base = rng.normal(age_p[c1, 0], age_p[c1, 1])
    base = np.where((base < lo) | (base > hi), rng.uniform(lo, hi), base)
    fem = np.array([c.female for c in conds])
    must_f = (fem[c1] >= 1.0) | (has2 & (fem[c2] >= 1.0))
    gender = np.where(must_f | (rng.random(n_pat) < fem[c1]), 0, 1)
    gender = np.where(~must_f & (rng.random(n_pat) < 0.01), 2, gender)
    ins_p = np.where((base >= 60)[:, None], [0.35, 0.1, 0.05, 0.5], [0.6, 0.25, 0.15, 0.0]).cumsum(1)
    insurance = np.argmax(rng.random(n_pat)[:, None] < ins_p, 1)

    pat = np.repeat(np.arange(n_pat), per)
    first = np.cumsum(per) - per
    gaps = 14.0 + rng.exponential(180.0, n)
    gaps[first] = 0.0
    cs = np.cumsum(gaps)
    offset = cs - cs[first][pat]
    days = rng.uniform(0, 6 * 365, n_pat)[pat] + offset
    age = np.clip(base[pat] + offset / 365.25, lo[pat], hi[pat])
    # latent severity: the patient, the stay, the conditions' acuity, comorbidity and age
    acuity = np.array([c.acuity for c in conds])
    raw = (0.55 * rng.normal(size=n_pat)[pat] + 0.8 * rng.normal(size=n)
           + acuity[c1][pat] + np.where(has2, 0.35 + acuity[c2.clip(0)], 0.0)[pat]
           + 0.35 * (age >= 65) + 0.2 * (age >= 80) + 0.2 * (age < 1))
    severity = (raw - raw.mean()) / max(float(raw.std()), 1e-9)
    surg = np.array([c.surgery for c in conds])
    surgery_p = np.where(has2, np.maximum(surg[c1], surg[c2]), surg[c1])[pat]
    surgery_p = np.clip(surgery_p * np.exp(0.5 * severity), 0.0, 0.95)
    t0 = np.datetime64("2014-01-01T00:00:00", "us").astype(np.int64)
    admit = t0 + np.round(days * 86400.0).astype(np.int64) * 1_000_000
    rec = {
        "patient": pat, "age": np.round(age, 2), "gender": gender[pat], "insurance": insurance[pat],
        "insurance_null": rng.random(n) < 0.01, "surgery": rng.random(n) < surgery_p,
        "conds": np.stack([c1[pat], c2[pat]], 1), "admit": admit, "severity": severity.astype(np.float32),
    }
    order = np.argsort(admit, kind="stable")
    return {k: v[order] for k, v in rec.items()}
