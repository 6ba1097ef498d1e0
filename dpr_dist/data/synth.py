"""Synthetic EMR records and drug interactions in the data contract (``dpr synth``).

The generator plants the structure DPR-WG / DPR-AG exist to find (paper sections 1, 3, 4;
``docs/synthetic-data.md`` describes the process and its knobs):

* latent patient conditions (1-2 per patient) that show, noisily, in demographics, abnormal
  labs and admission-note words, never by name;
* condition regimens built around a core of drugs whose pairs are labelled synergism,
  plus background drugs (saline-like), co-prescribed synergy partners and random drugs;
* antagonistic pairs that are rarely co-prescribed, synergistic pairs that are avoided for
  patients with one condition (the paper's cefuroxime + gentamicin for kidney disease) and
  drugs contraindicated for a condition (infants, pregnancy);
* partial alignment: ~40% of the EMR drugs are in the interaction table (paper: 565 of
  1,428), whose rows follow the paper's none : synergism : antagonism proportions and are
  directed; EMR names carry strengths, forms and salts, the table uses bare names.

Everything is drawn from one ``numpy.random.SeedSequence`` (same arguments, same tables) and
built with vectorized numpy and Arrow; the only per-row Python is the note text. Paper scale
(158,556 records, 1,428 drugs) takes about ten seconds on two cores.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from dpr_dist.data.schema import DDI_SCHEMA, EMR_SCHEMA, LAB_TYPE

log = logging.getLogger(__name__)

#: Paper Table 1: interaction rows among 565 aligned drugs.
PAPER_DDI_ROWS = {"none": 2560, "synergism": 22986, "antagonism": 6389}
PAPER_ALIGNED = 565
LABELS = ("none", "synergism", "antagonism")
GENDERS = ("F", "M", "unknown")
INSURANCE = ("basic medical insurance", "commercial insurance", "self-pay", "retiree insurance")
FLAGS = ("normal", "high", "low", "abnormal")

# --------------------------------------------------------------------------- vocabulary

#: Lab items: (name, ref_low, ref_high, share of records with the test in their panel).
LABS: tuple[tuple[str, float, float, float], ...] = (
    ("white blood cells", 4.0, 10.0, 0.85), ("c-reactive protein", 0.0, 8.0, 0.45),
    ("procalcitonin", 0.0, 0.5, 0.15), ("glucose", 65.0, 99.0, 0.8), ("hba1c", 4.0, 5.6, 0.15),
    ("creatinine", 0.6, 1.2, 0.75), ("urea nitrogen", 7.0, 20.0, 0.7), ("egfr", 90.0, 150.0, 0.3),
    ("potassium", 3.5, 5.1, 0.75), ("sodium", 135.0, 145.0, 0.75), ("alt", 7.0, 56.0, 0.5),
    ("ast", 10.0, 40.0, 0.5), ("total bilirubin", 0.1, 1.2, 0.45), ("albumin", 3.5, 5.0, 0.4),
    ("hcg", 0.0, 5.0, 0.05), ("hemoglobin", 12.0, 17.5, 0.85), ("alkaline phosphatase", 44.0, 147.0, 0.3),
    ("bnp", 0.0, 100.0, 0.1), ("troponin i", 0.0, 0.04, 0.15), ("eosinophils", 0.0, 0.5, 0.4),
    ("po2", 75.0, 100.0, 0.2), ("ferritin", 20.0, 250.0, 0.1), ("mcv", 80.0, 100.0, 0.6),
    ("ldl cholesterol", 50.0, 130.0, 0.2), ("total cholesterol", 125.0, 200.0, 0.25),
    ("triglycerides", 50.0, 150.0, 0.25), ("tsh", 0.4, 4.0, 0.15), ("free t4", 0.8, 1.8, 0.1),
    ("inr", 0.8, 1.2, 0.35), ("prolactin", 4.0, 23.0, 0.03), ("uric acid", 3.5, 7.2, 0.2),
    ("creatine kinase", 30.0, 200.0, 0.2), ("platelets", 150.0, 400.0, 0.85),
    ("chloride", 98.0, 106.0, 0.6), ("calcium", 8.5, 10.5, 0.5), ("lactate", 0.5, 2.2, 0.15),
)
_LAB_INDEX = {name: i for i, (name, *_rest) in enumerate(LABS)}


@dataclass(frozen=True)
class Condition:
    """A latent patient condition and how it shows.

    Attributes:
        name: Latent label (never written into notes).
        weight: Relative prevalence.
        age: ``(mean, sd, lo, hi)`` of the age in years; ``[lo, hi]`` is a hard range.
        female: Probability of gender F (1.0 means F only).
        labs: ``(lab, "high" | "low")`` results the condition tends to make abnormal.
        words: Note phrases (symptoms, findings).
        stems: Drug-name suffixes of its regimen (cosmetic).
        contra: Number of drugs contraindicated for it.
        avoid_with: Condition whose synergistic pair is avoided for these patients.
        surgery: Probability of a surgical stay.
    """

    name: str
    weight: float
    age: tuple[float, float, float, float]
    female: float
    labs: tuple[tuple[str, str], ...]
    words: tuple[str, ...]
    stems: tuple[str, ...]
    contra: int = 0
    avoid_with: str | None = None
    surgery: float = 0.15


CONDITIONS: tuple[Condition, ...] = (
    Condition("infection", 3.0, (45, 25, 0, 100), 0.5,
              (("white blood cells", "high"), ("c-reactive protein", "high"), ("procalcitonin", "high")),
              ("fever", "chills", "productive cough", "purulent sputum", "burning on urination"),
              ("cillin", "mycin", "floxacin", "penem", "cycline", "bactam")),
    Condition("hypertension", 2.0, (62, 12, 18, 100), 0.5, (("potassium", "low"),),
              ("headache", "dizziness", "blurred vision", "palpitations", "neck stiffness"),
              ("pril", "sartan", "olol", "dipine", "thiazide"), avoid_with="diabetes"),
    Condition("diabetes", 2.0, (58, 14, 8, 100), 0.5, (("glucose", "high"), ("hba1c", "high")),
              ("polyuria", "polydipsia", "weight loss", "numbness in the feet", "slow healing wound"),
              ("gliptin", "formin", "glinide", "glitazone", "gliflozin"), avoid_with="hypertension"),
    Condition("kidney disease", 1.2, (60, 15, 1, 100), 0.5,
              (("creatinine", "high"), ("urea nitrogen", "high"), ("egfr", "low"), ("potassium", "high")),
              ("oliguria", "foamy urine", "lower limb edema", "flank pain", "itchy skin"),
              ("semide", "poetin", "calcet", "sevamer"), contra=2, avoid_with="infection"),
    Condition("liver disease", 1.0, (52, 13, 1, 100), 0.4,
              (("alt", "high"), ("ast", "high"), ("total bilirubin", "high"), ("albumin", "low")),
              ("jaundice", "abdominal distension", "dark urine", "right upper quadrant pain", "spider nevi"),
              ("sodiol", "lulose", "faximin", "silibin"), contra=2, avoid_with="heart failure"),
    Condition("pregnancy", 0.7, (30, 5, 18, 44), 1.0, (("hcg", "high"), ("hemoglobin", "low")),
              ("amenorrhea", "morning nausea", "fetal movements", "lower abdominal discomfort", "breast tenderness"),
              ("folin", "gestin", "tocin"), contra=3, avoid_with="hypertension", surgery=0.25),
    Condition("infant", 0.7, (0.8, 0.5, 0, 2), 0.5,
              (("total bilirubin", "high"), ("alkaline phosphatase", "high")),
              ("poor feeding", "inconsolable crying", "vomiting after feeds", "diaper rash", "bulging fontanelle"),
              ("cetamol", "lactin", "profen"), contra=3, avoid_with="infection"),
    Condition("heart failure", 1.0, (70, 10, 30, 100), 0.45,
              (("bnp", "high"), ("troponin i", "high"), ("sodium", "low")),
              ("dyspnea on exertion", "orthopnea", "ankle swelling", "jugular venous distension"),
              ("goxin", "lactone", "vaptan", "olol"), avoid_with="kidney disease"),
    Condition("asthma", 1.2, (35, 22, 2, 100), 0.55, (("eosinophils", "high"), ("po2", "low")),
              ("wheezing", "shortness of breath", "chest tightness", "night cough"),
              ("terol", "sonide", "lukast", "tropium"), avoid_with="heart failure"),
    Condition("anemia", 0.9, (45, 20, 0, 100), 0.65,
              (("hemoglobin", "low"), ("ferritin", "low"), ("mcv", "low")),
              ("pallor", "fatigue", "dizziness on standing", "brittle nails"),
              ("ferrin", "cobalamin", "poetin")),
    Condition("coronary disease", 1.0, (63, 10, 30, 100), 0.35,
              (("ldl cholesterol", "high"), ("total cholesterol", "high"), ("triglycerides", "high")),
              ("chest pain on exertion", "pain radiating to the left arm", "cold sweating"),
              ("statin", "grel", "parin", "xaban"), avoid_with="liver disease", surgery=0.35),
    Condition("hypothyroidism", 0.7, (48, 15, 5, 100), 0.75, (("tsh", "high"), ("free t4", "low")),
              ("cold intolerance", "weight gain", "constipation", "dry skin", "hoarse voice"),
              ("thyroxine", "thyronine")),
    Condition("stroke", 0.7, (68, 11, 30, 100), 0.45, (("inr", "high"), ("glucose", "high")),
              ("slurred speech", "one-sided weakness", "facial droop", "sudden confusion"),
              ("teplase", "grel", "parin"), avoid_with="coronary disease"),
    Condition("epilepsy", 0.6, (30, 18, 0, 100), 0.5, (("prolactin", "high"), ("lactate", "high")),
              ("seizure", "loss of consciousness", "tongue biting", "postictal drowsiness"),
              ("azepine", "racetam", "trigine", "barbital"), contra=1),
    Condition("gout", 0.6, (55, 12, 18, 100), 0.2, (("uric acid", "high"), ("c-reactive protein", "high")),
              ("big toe pain", "red swollen joint", "pain at night"), ("purinol", "cine", "buxostat")),
    Condition("trauma", 0.8, (40, 20, 0, 100), 0.35, (("creatine kinase", "high"), ("hemoglobin", "low")),
              ("after a fall", "limb deformity", "local tenderness", "open wound"),
              ("caine", "codone", "curium"), surgery=0.8),
)
_GENERIC_STEMS = ("azole", "prazole", "tidine", "setron", "triptan", "oxetine", "zepam", "vir", "conazole",
                  "afil", "fenac", "mab", "tinib", "dronate", "lamide", "sone", "mide", "dazine")
_SURGERY_STEMS = ("caine", "curium", "dazolam", "fol")
_ONSETS = ("b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "cl", "cr", "dr",
           "fl", "gl", "pr", "tr", "st", "qu", "x", "h", "k")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ae", "io")
_LINKS = ("n", "r", "l", "t", "v", "m", "d", "x")
_FORMS = ("tablet", "capsule", "injection", "solution", "suspension", "cream", "syrup", "patch")
_SALTS = ("sodium", "hydrochloride", "sulfate", "acetate", "phosphate", "maleate", "tartrate", "mesylate",
          "succinate", "potassium")
_STRENGTHS = ("5 mg", "10 mg", "20 mg", "25 mg", "40 mg", "50 mg", "100 mg", "200 mg", "250 mg", "500 mg",
              "1 g", "125 mcg", "0.5 mg", "2 g")
#: Spelling variants of a prescription and their shares.
_VARIANT_P = np.array([0.55, 0.10, 0.05, 0.15, 0.10, 0.05])
_EFFECTS = ("antihypertensive", "anticoagulant", "hypoglycemic", "sedative", "antibacterial", "analgesic",
            "bronchodilatory", "diuretic", "antiplatelet", "vasodilatory", "anticonvulsant", "antiemetic")
_FILLER = ("clear consciousness", "normal appetite", "poor sleep", "stable vital signs", "soft abdomen",
           "no known drug allergy", "regular bowel movements", "good general condition", "mild distress",
           "warm extremities", "no lymphadenopathy", "normal gait")
_GENERIC_SYMPTOMS = ("pain", "swelling", "numbness", "itching", "stiffness", "weakness", "tingling", "redness")
_BODY_PARTS = ("left knee", "right shoulder", "lower back", "left hand", "right hip", "neck", "both ankles",
               "upper abdomen", "right eye", "left ear", "jaw", "both wrists", "left foot", "chest wall")


@dataclass(frozen=True)
class SynthKnobs:
    """Probabilities of the generative process (defaults documented in docs/synthetic-data.md)."""

    aligned_fraction: float = PAPER_ALIGNED / 1428
    records_per_patient: float = 1.3
    second_condition: float = 0.4
    core_prob: float = 0.75
    extended_prob: float = 0.2
    surgery_drug_prob: float = 0.7
    partner_share: float = 0.3
    avoid_antagonism: float = 0.95
    avoid_rule: float = 0.97
    avoid_contra: float = 0.98
    hard_fraction: float = 0.03
    null_label_fraction: float = 0.05
    lab_signal: float = 0.8
    lab_noise: float = 0.08
    flag_fraction: float = 0.55
    word_prob: float = 0.65
    noise_word: float = 0.25


@dataclass(frozen=True, eq=False)
class SynthTruth:
    """What the generator planted (for tests, evaluation and debugging; never an input).

    Attributes:
        drug_names: ``[D]`` bare drug names; the index is the drug id.
        aligned: ``[D]`` bool, the drug is in the interaction table.
        conditions: ``[C]`` condition names.
        record_conditions: ``[R, 2]`` condition ids per EMR row, ``-1`` for none.
        package_offsets: ``[R + 1]`` offsets into ``package_drugs``.
        package_drugs: ``[N]`` drug ids of the EMR ``drugs`` lists, in the same order.
        hard: ``[R]`` bool, the package was drawn at random.
        regimens: condition -> core drug names (pairs labelled synergism).
        contraindications: condition -> drugs avoided for it.
        rules: ``(condition, kept drug, dropped drug)``: a synergistic pair avoided for it.
    """

    drug_names: tuple[str, ...]
    aligned: np.ndarray
    conditions: tuple[str, ...]
    record_conditions: np.ndarray
    package_offsets: np.ndarray
    package_drugs: np.ndarray
    hard: np.ndarray
    regimens: dict[str, tuple[str, ...]] = field(default_factory=dict)
    contraindications: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rules: tuple[tuple[str, str, str], ...] = ()


# --------------------------------------------------------------------------- the plan


@dataclass(eq=False)
class _Plan:
    """Drug-level structure shared by every record."""

    conds: list[Condition]
    names: list[str]
    aligned: np.ndarray  # [D] bool, has rows in the interaction table
    background: np.ndarray  # [B] drug ids
    bg_prob: np.ndarray  # [B]
    pop: np.ndarray  # [D] draw probabilities of random drugs (0 on background)
    cores: np.ndarray  # [C, K] drug ids, -1 padded
    exts: np.ndarray  # [C, K]
    surg: np.ndarray  # [S]
    contra: np.ndarray  # [C, Kc], -1 padded
    rules: np.ndarray  # [Q, 3] (condition, a, b): drop b
    ddi: np.ndarray  # [E, 3] (a, b, label) directed rows
    ant: np.ndarray  # [P, 2] unordered antagonistic pairs
    syn_ptr: np.ndarray  # CSR of synergy partners (undirected)
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


def _pairs_within(groups: list[np.ndarray]) -> np.ndarray:
    """``[M, 2]`` unordered pairs (lo, hi) of distinct drugs inside each group."""
    out = []
    for g in groups:
        g = np.unique(g[g >= 0])
        i, j = np.triu_indices(len(g), 1)
        out.append(np.stack([g[i], g[j]], 1))
    return np.unique(np.concatenate(out) if out else np.zeros((0, 2), np.int64), axis=0).reshape(-1, 2)


def _sample_pairs(pool: np.ndarray, n: int, taken: set, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` new unordered pairs from ``pool`` x ``pool`` not in ``taken`` (updated)."""
    out: list[tuple[int, int]] = []
    for _ in range(8):
        if len(out) >= n or len(pool) < 2:
            break
        m = 2 * (n - len(out)) + 16
        a, b = rng.choice(pool, m), rng.choice(pool, m)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        keep = lo != hi
        for x, y in zip(lo[keep].tolist(), hi[keep].tolist()):
            if (x, y) not in taken:
                taken.add((x, y))
                out.append((x, y))
                if len(out) == n:
                    break
    return np.array(out, np.int64).reshape(-1, 2)


def _make_plan(drugs: int, n_cond: int, mean_package: float, knobs: SynthKnobs,
               rng: np.random.Generator) -> _Plan:
    """Roles of the drugs, regimens, rules and the interaction structure."""
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
    aligned = np.zeros(D, bool)
    aligned[background] = True
    aligned[aligned_pool] = True
    k_core = int(np.clip(round(0.4 * mean_package), 2, max(2, len(aligned_pool) // (C + 1))))
    k_surg = max(2, k_core // 2)
    cores = np.stack([aligned_pool[(np.arange(k_core) + c * k_core) % len(aligned_pool)] for c in range(C)])
    surg = aligned_pool[(np.arange(k_surg) + C * k_core) % len(aligned_pool)]
    exts = np.stack([rng.choice(rest, min(k_core, len(rest)), replace=False) for _ in range(C)])
    exts = np.where(np.isin(exts, cores), -1, exts)

    ranks = rng.permutation(D)
    pop = 1.0 / (ranks + 8.0) ** 1.05
    pop[background] = 0.0
    pop /= pop.sum()
    bg_prob = np.sort(rng.uniform(0.35, 0.9, n_bg))[::-1]

    # rules: a core pair of another condition, dropped for this one
    rules, used = [], {}
    names = [x.name for x in conds]
    for ci, c in enumerate(conds):
        t = names.index(c.avoid_with) if c.avoid_with in names else -1
        if t < 0 or not compat[ci, t]:
            cand = np.flatnonzero(compat[ci])
            if not len(cand):
                continue
            t = int(cand[np.argmax([conds[j].weight for j in cand])])
        j = used.get(t, 0) % (k_core // 2)
        used[t] = used.get(t, 0) + 1
        rules.append((ci, cores[t, 2 * j], cores[t, 2 * j + 1]))
    rules_arr = np.array(rules, np.int64).reshape(-1, 3)

    # contraindications: common drugs (other regimens, popular ones) avoided for a condition
    top = np.argsort(-pop)[: max(4, D // 20)]
    contra = np.full((C, max([c.contra for c in conds] + [1])), -1, np.int64)
    for ci, c in enumerate(conds):
        if not c.contra:
            continue
        cand = np.union1d(cores[compat[ci]].ravel(), top)
        cand = np.setdiff1d(cand, np.concatenate([cores[ci], background, rules_arr[rules_arr[:, 0] == ci, 1:].ravel()]))
        if len(cand):
            contra[ci, : min(c.contra, len(cand))] = rng.choice(cand, min(c.contra, len(cand)), replace=False)

    # interaction structure among aligned drugs
    al = np.flatnonzero(aligned)
    nA = len(al)
    cap = 0.15 * nA * (nA - 1)  # paper: 10% of the ordered pairs are labelled
    scale = min(nA / PAPER_ALIGNED, cap / sum(PAPER_DDI_ROWS.values()))
    two_way = {"none": 0.5, "synergism": 0.35, "antagonism": 0.25}  # share of pairs with both directions
    want = {k: int(round(PAPER_DDI_ROWS[k] * scale / (1 + two_way[k]))) for k in LABELS}
    syn_forced = _pairs_within([*cores, surg])
    taken = {(int(a), int(b)) for a, b in syn_forced}  # core pairs never get another label
    hot = np.union1d(np.union1d(cores.ravel(), surg), np.intersect1d(top, al))
    n_hot = int(min(0.3 * want["antagonism"], 0.03 * len(hot) * (len(hot) - 1) / 2))
    ant = _sample_pairs(hot, n_hot, taken, rng)
    ant = np.concatenate([ant, _sample_pairs(al, want["antagonism"] - len(ant), taken, rng)])
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
    order = np.argsort(und[:, 0], kind="stable")
    syn_ptr = np.concatenate([[0], np.cumsum(np.bincount(und[:, 0], minlength=D))])

    stems = [_GENERIC_STEMS] * D
    for ci in range(C):
        for d in cores[ci]:
            stems[d] = conds[ci].stems
    for d in surg:
        stems[d] = _SURGERY_STEMS
    in_ddi = np.zeros(D, bool)
    in_ddi[ddi[:, :2].ravel()] = True
    return _Plan(conds, _names(stems, rng), in_ddi, background, bg_prob, pop, cores, exts, surg, contra,
                 rules_arr, ddi, ant, syn_ptr, und[order, 1], compat)


# --------------------------------------------------------------------------- records


def _records(n: int, plan: _Plan, knobs: SynthKnobs, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Patients, their latent conditions and demographics; one entry per stay, by admit time."""
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
    surg = np.array([c.surgery for c in conds])
    surgery_p = np.where(has2, np.maximum(surg[c1], surg[c2]), surg[c1])
    t0 = np.datetime64("2014-01-01T00:00:00", "us").astype(np.int64)
    admit = t0 + np.round(days * 86400.0).astype(np.int64) * 1_000_000
    rec = {
        "patient": pat, "age": np.round(age, 2), "gender": gender[pat], "insurance": insurance[pat],
        "insurance_null": rng.random(n) < 0.01, "surgery": rng.random(n) < surgery_p[pat],
        "conds": np.stack([c1[pat], c2[pat]], 1), "admit": admit,
    }
    order = np.argsort(admit, kind="stable")
    return {k: v[order] for k, v in rec.items()}


# --------------------------------------------------------------------------- packages


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


def _avoid(src: np.ndarray, member: np.ndarray, plan: _Plan, knobs: SynthKnobs, rng: np.random.Generator,
           new: int | None = None) -> None:
    """Drop contraindicated drugs, condition-avoided pairs and antagonistic pairs.

    ``member`` is ``[n, C]`` (all False on hard records). With ``new`` set, only conflicts
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
    act = rng.random(len(pi)) < knobs.avoid_antagonism
    pi, ri = pi[act], ri[act]
    a, b = a[pi], b[pi]
    ca, cb = src[ri, a], src[ri, b]
    drop_b = (cb > ca) | ((cb == ca) & (rng.random(len(pi)) < 0.5))
    src[ri, np.where(drop_b, b, a)] = 255


def _chunk_packages(conds: np.ndarray, surgery: np.ndarray, hard: np.ndarray, plan: _Plan,
                    knobs: SynthKnobs, mean_package: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Packages of ``n`` records as ``(record, drug)`` entries sorted by record.

    ``src`` is a ``[n, D]`` matrix of where a drug came from (0 core, 1 background, 2
    surgery, 3 extended regimen, 4 random or partner, 5 refill; 255 absent); on a conflict
    the drug from the weaker source goes. A refill round restores the sizes the avoidance
    rules cut, and is checked against the same rules.
    """
    D, n = len(plan.names), len(conds)
    src = np.full((n, D), 255, np.uint8)
    ok = conds >= 0
    for s in (0, 1):
        ext = plan.exts[conds[:, s].clip(0)]
        _put(src, ext, (rng.random(ext.shape) < knobs.extended_prob) & ok[:, s, None], 3)
    sg = np.broadcast_to(plan.surg, (n, len(plan.surg)))
    _put(src, sg, (rng.random(sg.shape) < knobs.surgery_drug_prob) & surgery[:, None], 2)
    bg = np.broadcast_to(plan.background, (n, len(plan.background)))
    _put(src, bg, rng.random(bg.shape) < plan.bg_prob, 1)
    for s in (0, 1):
        core = plan.cores[conds[:, s].clip(0)]
        _put(src, core, (rng.random(core.shape) < knobs.core_prob) & ok[:, s, None], 0)
    src[hard] = 255

    count = (src != 255).sum(1)
    lam = max(0.5, mean_package - count[~hard].mean()) if (~hard).any() else mean_package
    need = np.where(hard, np.maximum(2, rng.poisson(mean_package, n)), rng.poisson(lam * rng.gamma(2.0, 0.5, n)))
    target = count + need
    share = np.where(hard, 0.0, knobs.partner_share)
    _fill(src, need, share, plan, 4, rng)
    member = (conds[:, :, None] == np.arange(len(plan.conds))).any(1) & ~hard[:, None]
    _avoid(src, member, plan, knobs, rng)
    _fill(src, np.maximum(0, target - (src != 255).sum(1)), share, plan, 5, rng)
    _avoid(src, member, plan, knobs, rng, new=5)

    # at least two distinct drugs: top up with background, then popular drugs
    present = src != 255
    count = present.sum(1)
    for x in np.concatenate([plan.background, np.argsort(-plan.pop)[:2]]):
        add = (count < 2) & ~present[:, x]
        present[add, x] = True
        count += add
    return _entries(present)


def _packages(rec: dict[str, np.ndarray], plan: _Plan, knobs: SynthKnobs, mean_package: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All packages, in chunks bounded in memory. Returns ``(offsets [R+1], drugs [N], hard [R])``."""
    n, D = len(rec["age"]), len(plan.names)
    hard = rng.random(n) < knobs.hard_fraction
    chunk = int(np.clip(2**25 // max(D, len(plan.ant), 1), 256, 16384))
    rs, ds = [], []
    for k, s in enumerate(range(0, n, chunk)):
        e = min(n, s + chunk)
        sub = np.random.default_rng([int(rng.integers(2**63)), k])
        r, d = _chunk_packages(rec["conds"][s:e], rec["surgery"][s:e], hard[s:e], plan, knobs, mean_package, sub)
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


# --------------------------------------------------------------------------- columns


def _labs(rec: dict[str, np.ndarray], plan: _Plan, knobs: SynthKnobs, rng: np.random.Generator) -> pa.Array:
    """``labs`` column: a routine panel with a little noise plus the conditions' abnormal labs."""
    n, L = len(rec["age"]), len(LABS)
    low, high, share = (np.array([x[i] for x in LABS]) for i in (1, 2, 3))
    present = rng.random((n, L)) < share
    u = rng.random((n, L))
    level = np.where(u < knobs.lab_noise / 2, 1, np.where(u < knobs.lab_noise, 2, 0)).astype(np.int8)
    level[(level == 2) & (low <= 0)] = 1  # 1 high, 2 low
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
    """``note`` column: symptom phrases of the conditions (noisy), filler and findings."""
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
    out = []
    for i in range(n):
        sym = [w for s in (0, 1) if conds[i][s] >= 0 for w, keep in zip(words[conds[i][s]], incl[i][s]) if keep]
        if noise[i] >= 0:
            ws = words[noise[i]]
            sym.insert(int(pos[i] * (len(sym) + 1)), ws[int(noise_w[i] * len(ws))])
        sym = list(dict.fromkeys(sym)) or ["general malaise"]
        text = (f"{subj[i]} was admitted to the hospital for {_join(sym)} for {days[i]} days. "
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


# --------------------------------------------------------------------------- public API


def generate_with_truth(records: int, drugs: int, seed: int = 0, conditions: int = 12, notes: bool = True,
                        mean_package: float = 18.0, *,
                        knobs: SynthKnobs | None = None) -> tuple[pa.Table, pa.Table, SynthTruth]:
    """Like :func:`generate`, plus what was planted (:class:`SynthTruth`)."""
    for name, val, least in (("records", records, 1), ("drugs", drugs, 8), ("conditions", conditions, 1)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < least:
            raise ValueError(f"synth: {name} must be an integer >= {least}, got {val!r}")
    if not np.isfinite(mean_package) or mean_package < 2:
        raise ValueError(f"synth: mean_package must be a number >= 2, got {mean_package!r}")
    knobs = knobs or SynthKnobs()
    mean_eff = float(min(mean_package, max(2.0, 0.4 * drugs)))
    if mean_eff < mean_package:
        log.info("mean_package %.1f lowered to %.1f for %d drugs", mean_package, mean_eff, drugs)
    t0 = time.perf_counter()
    r_plan, r_rec, r_pkg, r_lab, r_note, r_var, r_ddi = (
        np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(7))
    plan = _make_plan(int(drugs), int(conditions), mean_eff, knobs, r_plan)
    rec = _records(int(records), plan, knobs, r_rec)
    offsets, dids, hard = _packages(rec, plan, knobs, mean_eff, r_pkg)
    spell = r_var.choice(len(_VARIANT_P), size=len(dids), p=_VARIANT_P)
    drug_col = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)),
                                        _variants(plan.names, plan.aligned, r_var).take(pa.array(dids * 6 + spell)))
    n = int(records)
    width = max(6, len(str(n)))
    ins = pa.array(INSURANCE).take(pa.array(rec["insurance"], pa.int64(), mask=rec["insurance_null"]))
    emr = pa.Table.from_arrays([
        pa.array([f"R{i:0{width}d}" for i in range(n)], pa.string()),
        pa.array([f"P{p:0{width}d}" for p in rec["patient"].tolist()], pa.string()),
        pa.array(GENDERS).take(pa.array(rec["gender"])),
        pa.array(rec["age"], pa.float64()),
        ins,
        pa.array(rec["surgery"], pa.bool_()),
        _labs(rec, plan, knobs, r_lab),
        _notes(rec, plan, knobs, r_note) if notes else pa.nulls(n, pa.string()),
        drug_col,
        pa.array(rec["admit"], pa.timestamp("us")),
    ], schema=EMR_SCHEMA)
    ddi = _ddi_table(plan, knobs, r_ddi)
    cn = [c.name for c in plan.conds]
    truth = SynthTruth(
        drug_names=tuple(plan.names), aligned=plan.aligned, conditions=tuple(cn),
        record_conditions=rec["conds"].astype(np.int16), package_offsets=offsets, package_drugs=dids, hard=hard,
        regimens={cn[c]: tuple(plan.names[d] for d in plan.cores[c]) for c in range(len(cn))},
        contraindications={cn[c]: tuple(plan.names[d] for d in row[row >= 0]) for c, row in enumerate(plan.contra)
                           if (row >= 0).any()},
        rules=tuple((cn[c], plan.names[a], plan.names[b]) for c, a, b in plan.rules.tolist()),
    )
    log.info("%d records, %d drugs, %d interaction rows in %.1fs", n, drugs, ddi.num_rows,
             time.perf_counter() - t0)
    return emr, ddi, truth


def generate(records: int, drugs: int, seed: int = 0, conditions: int = 12, notes: bool = True,
             mean_package: float = 18.0, *, knobs: SynthKnobs | None = None) -> tuple[pa.Table, pa.Table]:
    """Return ``(emr, ddi)`` Arrow tables in the data contract.

    Args:
        records: Number of EMR rows (hospital stays); about 1.3 per patient.
        drugs: Drug catalog size; ~40% of them are in the interaction table.
        seed: Seed of everything random (same arguments, identical tables).
        conditions: Number of latent patient conditions (16 named ones, then generic).
        notes: Write admission notes (null when False).
        mean_package: Target mean package size (lowered to ``0.4 * drugs`` when larger).
        knobs: Probabilities of the generative process (:class:`SynthKnobs`).

    Returns:
        ``emr`` ``[records]`` rows in :data:`EMR_SCHEMA` and ``ddi`` rows (one per ordered
        drug pair) in :data:`DDI_SCHEMA`.

    Raises:
        ValueError: on a non-integer or too small count, or ``mean_package < 2``.
    """
    emr, ddi, _ = generate_with_truth(records, drugs, seed, conditions, notes, mean_package, knobs=knobs)
    return emr, ddi


def write(emr: pa.Table, ddi: pa.Table, out: str, rows_per_file: int = 50_000) -> dict:
    """Write ``out/emr/part-00000.parquet ...`` and ``out/ddi.parquet`` (local dir or ``s3://``).

    Files already under ``out/emr/`` are removed first, so a directory reader sees only
    this data set. S3 endpoint and credentials come from the usual ``AWS_*`` variables.

    Returns:
        Summary counts: records, patients, files, interaction rows per label, mean package size.

    Raises:
        ValueError: when a table is not in the contract or ``rows_per_file < 1``.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from dpr_dist.data import io

    if rows_per_file < 1:
        raise ValueError(f"synth.write: rows_per_file must be >= 1, got {rows_per_file}")
    for table, schema, what in ((emr, EMR_SCHEMA, "emr"), (ddi, DDI_SCHEMA, "ddi")):
        have = [(f.name, f.type) for f in table.schema]
        if have != [(f.name, f.type) for f in schema]:
            raise ValueError(f"synth.write: the {what} table is not in the contract: columns {table.schema.names}")
    fs, root = io.filesystem(out)
    emr_dir = f"{root.rstrip('/')}/emr"
    fs.create_dir(emr_dir, recursive=True)
    fs.delete_dir_contents(emr_dir, missing_dir_ok=True)
    files = max(1, -(-emr.num_rows // rows_per_file))
    for i in range(files):
        pq.write_table(emr.slice(i * rows_per_file, rows_per_file), f"{emr_dir}/part-{i:05d}.parquet", filesystem=fs)
    pq.write_table(ddi, f"{root.rstrip('/')}/ddi.parquet", filesystem=fs)
    counts = {x["values"]: x["counts"] for x in pc.value_counts(ddi["label"].combine_chunks()).to_pylist()}
    sizes = pc.list_value_length(emr["drugs"].combine_chunks())
    return {
        "emr": io.join(out, "emr"), "ddi": io.join(out, "ddi.parquet"), "emr_files": files,
        "records": emr.num_rows, "patients": pc.count_distinct(emr["patient_id"]).as_py(),
        "mean_package": round(pc.mean(sizes).as_py() or 0.0, 2), "ddi_rows": ddi.num_rows,
        "ddi_labels": {**{k: int(counts.get(k, 0)) for k in LABELS}, "null": int(counts.get(None, 0))},
    }
