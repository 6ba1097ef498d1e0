"""Arrow columns of the synthetic tables: labs, admission notes, drug spellings and the
interaction table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dpr_dist.data.schema import DDI_SCHEMA, LAB_TYPE
from dpr_dist.data.synth.knobs import SynthKnobs
from dpr_dist.data.synth.plan import _Plan
from dpr_dist.data.synth.vocab import (
    _EFFECTS, _FILLER, _FORMS, _LAB_INDEX, _SALTS, _SEVERITY_WORDS, _STRENGTHS, ACUITY_LABS, FLAGS, LABELS, LABS,
)


def _labs(rec: dict[str, np.ndarray], plan: _Plan, knobs: SynthKnobs, rng: np.random.Generator) -> pa.Array:
    """``labs`` column: a routine panel with a little noise, acuity labs abnormal on severe
    stays (and random abnormal labs more frequent), plus the conditions' abnormal labs."""
    n, L = len(rec["age"]), len(LABS)
    low, high, share = (np.array([x[i] for x in LABS]) for i in (1, 2, 3))
    z = rec["severity"].astype(np.float64)
    present = rng.random((n, L)) < share
    u = rng.random((n, L))
    noise = np.clip(knobs.lab_noise * np.exp(0.5 * z), 0.0, 0.5)[:, None]
    level = np.where(u < noise / 2, 1, np.where(u < noise, 2, 0)).astype(np.int8)
    level[(level == 2) & (low <= 0)] = 1  # 1 high, 2 low
    sick = 1.0 / (1.0 + np.exp(-2.0 * (z - 1.0)))  # [n] 0.02 at z = -1, 0.5 at z = 1, 0.95 at z = 2.5
    for name, way in ACUITY_LABS:
        li = _LAB_INDEX[name]
        present[:, li] |= rng.random(n) < sick
        hit = rng.random(n) < knobs.severity_lab * sick
        level[hit, li] = 1 if way == "high" else 2
    lm = max(len(c.labs) for c in plan.conds)
    c_lab = np.full((len(plan.conds), lm), -1)
    c_dir = np.zeros((len(plan.conds), lm), np.int8)
    for ci, c in enumerate(plan.conds):
        for j, (name, way) in enumerate(c.labs):
            c_lab[ci, j], c_dir[ci, j] = _LAB_INDEX[name], 1 if way == "high" else 2
    for s in (0, 1):
        c = rec["conds"][:, s]
        for j in range(lm):
            li = c_lab[c.clip(0), j]
            rows = np.flatnonzero((c >= 0) & (li >= 0))
            cols, dirs = li[rows], c_dir[c[rows], j]
            present[rows, cols] |= rng.random(len(rows)) < 0.95
            level[rows, cols] = np.where(rng.random(len(rows)) < knobs.lab_signal, dirs, 0)
    rr, ll = np.nonzero(present)
    lv = level[rr, ll]
    w = high[ll] - low[ll]
    u = rng.random(len(ll))
    value = np.select([lv == 1, lv == 2], [high[ll] + w * (0.1 + 1.4 * u), low[ll] * (0.3 + 0.6 * u)],
                      low[ll] + w * (0.1 + 0.8 * u))
    code = np.where((lv > 0) & (rng.random(len(ll)) < 0.25), 3, lv)
    flag = pa.array(FLAGS).take(pa.array(code, pa.int8(), mask=rng.random(len(ll)) >= knobs.flag_fraction))
    items = pa.StructArray.from_arrays(
        [pa.array([x[0] for x in LABS]).take(pa.array(ll)), pa.array(np.round(value, 3)),
         pa.array(low[ll]), pa.array(high[ll]), flag], fields=list(LAB_TYPE))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rr, minlength=n))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), items)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _notes(rec: dict[str, np.ndarray], plan: _Plan, knobs: SynthKnobs, rng: np.random.Generator) -> pa.Array:
    """``note`` column: a severity phrase (noisy), symptom phrases of the conditions (noisy),
    filler and findings."""
    n, C = len(rec["age"]), len(plan.conds)
    words = [c.words for c in plan.conds]
    wm = max(len(w) for w in words)
    incl = (rng.random((n, 2, wm)) < knobs.word_prob).tolist()
    noise = np.where(rng.random(n) < knobs.noise_word, rng.integers(0, C, n), -1).tolist()
    noise_w, pos = rng.random(n).tolist(), rng.random(n).tolist()
    fill = rng.integers(0, len(_FILLER), (n, 2)).tolist()
    days = rng.integers(1, 15, n).tolist()
    subj = np.where(rec["age"] < 1, "The baby", np.where(rec["age"] < 14, "The child", "The patient")).tolist()
    conds, surgery = rec["conds"].tolist(), rec["surgery"].tolist()
    seen = rec["severity"] + knobs.severity_noise * rng.normal(size=n)
    level = np.digitize(seen, [-0.6, 0.5, 1.4]).tolist()
    severe = (rng.random(n) < np.clip(seen - 0.8, 0.0, 0.9)).tolist()
    out = []
    for i in range(n):
        sym = [w for s in (0, 1) if conds[i][s] >= 0 for w, keep in zip(words[conds[i][s]], incl[i][s]) if keep]
        if noise[i] >= 0:
            ws = words[noise[i]]
            sym.insert(int(pos[i] * (len(sym) + 1)), ws[int(noise_w[i] * len(ws))])
        sym = list(dict.fromkeys(sym)) or ["general malaise"]
        if severe[i]:
            sym[0] = "severe " + sym[0]
        text = (f"{subj[i]} was admitted {_SEVERITY_WORDS[level[i]]} for {_join(sym)} for {days[i]} days. "
                f"Physical examination: {_FILLER[fill[i][0]]}, {_FILLER[fill[i][1]]}.")
        out.append(text + " Surgery is planned." if surgery[i] else text)
    return pa.array(out, pa.string())


def _variants(names: list[str], aligned: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """``[D * 6]`` spellings per drug: bare, lower, upper, strength + form, salt, salt + strength.

    Drugs outside the interaction table get no salt (``name strength``, ``name form``
    instead): a salt is only recognisable against a known base name.
    """
    D = len(names)
    st = rng.integers(len(_STRENGTHS), size=D).tolist()
    fm = rng.integers(len(_FORMS), size=D).tolist()
    sa = rng.integers(len(_SALTS), size=D).tolist()
    out = []
    for i, x in enumerate(names):
        s, f, t = _STRENGTHS[st[i]], _FORMS[fm[i]], _SALTS[sa[i]]
        out += [x, x.lower(), x.upper(), f"{x} {s} {f}"]
        out += [f"{x} {t}", f"{x} {t} {s}"] if aligned[i] else [f"{x} {s}", f"{x} {f}"]
    return pa.array(out, pa.string())


def _ddi_table(plan: _Plan, knobs: SynthKnobs, rng: np.random.Generator) -> pa.Table:
    """Interaction rows with DrugBank-style descriptions; ~5% leave ``label`` null."""
    a, b, lab = plan.ddi.T.tolist() if len(plan.ddi) else ([], [], [])
    effect = rng.integers(len(_EFFECTS), size=len(plan.names)).tolist()
    nm = plan.names
    desc = [
        f"No interaction is known between {nm[x]} and {nm[y]}." if k == 0 else
        f"{nm[x]} may {'increase' if k == 1 else 'decrease'} the {_EFFECTS[effect[y]]} activities of {nm[y]}."
        for x, y, k in zip(a, b, lab)
    ]
    names = pa.array(nm, pa.string())
    label = pa.array(LABELS).take(pa.array(np.asarray(lab, np.int64), pa.int64(),
                                           mask=rng.random(len(lab)) < knobs.null_label_fraction))
    return pa.Table.from_arrays([names.take(pa.array(a, pa.int64())), names.take(pa.array(b, pa.int64())),
                                 label, pa.array(desc, pa.string())], schema=DDI_SCHEMA)
