"""Synthetic EMR records and drug interactions in the data contract (``dpr synth``).

The generator plants the structure DPR-WG / DPR-AG exist to find (paper sections 1, 3, 4;
``docs/synthetic-data.md`` describes the process and its knobs):

* latent patient conditions (1-2 per patient) that show, noisily, in demographics, abnormal
  labs and admission-note words, never by name;
* a latent severity per stay (age, conditions, the patient, chance) that drives the package
  size (lognormal, coefficient of variation ~0.6) and shows, noisily, as extra abnormal
  acuity labs, more surgery and note words ("stable" ... "critical", "severe");
* protocol bundles: disjoint groups of 2-6 drugs built around synergistic pairs (every
  pair of aligned drugs in a bundle is labelled synergism, no antagonistic pair inside),
  prescribed whole or not at all. Each condition has a first-line bundle and a few shared
  ones, surgery has its own; a package is mostly a union of whole bundles (more of them
  the more severe the stay) plus background drugs (saline-like) and a few individual
  drugs (the condition's extended regimen, synergy partners, random drugs);
* antagonistic pairs that are rarely co-prescribed (conflicting bundles are not combined),
  synergistic pairs that are avoided for patients with one condition (the paper's
  cefuroxime + gentamicin for kidney disease) and drugs contraindicated for a condition
  (infants, pregnancy);
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
        surgery: Probability of a surgical stay (at average severity).
        acuity: Shift of the latent severity of its patients (stroke +0.6, gout -0.5).
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
    acuity: float = 0.0


CONDITIONS: tuple[Condition, ...] = (
    Condition("infection", 3.0, (45, 25, 0, 100), 0.5,
              (("white blood cells", "high"), ("c-reactive protein", "high"), ("procalcitonin", "high")),
              ("fever", "chills", "productive cough", "purulent sputum", "burning on urination"),
              ("cillin", "mycin", "floxacin", "penem", "cycline", "bactam"), acuity=0.1),
    Condition("hypertension", 2.0, (62, 12, 18, 100), 0.5, (("potassium", "low"),),
              ("headache", "dizziness", "blurred vision", "palpitations", "neck stiffness"),
              ("pril", "sartan", "olol", "dipine", "thiazide"), avoid_with="diabetes", acuity=-0.2),
    Condition("diabetes", 2.0, (58, 14, 8, 100), 0.5, (("glucose", "high"), ("hba1c", "high")),
              ("polyuria", "polydipsia", "weight loss", "numbness in the feet", "slow healing wound"),
              ("gliptin", "formin", "glinide", "glitazone", "gliflozin"), avoid_with="hypertension", acuity=-0.1),
    Condition("kidney disease", 1.2, (60, 15, 1, 100), 0.5,
              (("creatinine", "high"), ("urea nitrogen", "high"), ("egfr", "low"), ("potassium", "high")),
              ("oliguria", "foamy urine", "lower limb edema", "flank pain", "itchy skin"),
              ("semide", "poetin", "calcet", "sevamer"), contra=2, avoid_with="infection", acuity=0.3),
    Condition("liver disease", 1.0, (52, 13, 1, 100), 0.4,
              (("alt", "high"), ("ast", "high"), ("total bilirubin", "high"), ("albumin", "low")),
              ("jaundice", "abdominal distension", "dark urine", "right upper quadrant pain", "spider nevi"),
              ("sodiol", "lulose", "faximin", "silibin"), contra=2, avoid_with="heart failure", acuity=0.3),
    Condition("pregnancy", 0.7, (30, 5, 18, 44), 1.0, (("hcg", "high"), ("hemoglobin", "low")),
              ("amenorrhea", "morning nausea", "fetal movements", "lower abdominal discomfort", "breast tenderness"),
              ("folin", "gestin", "tocin"), contra=3, avoid_with="hypertension", surgery=0.25, acuity=-0.3),
    Condition("infant", 0.7, (0.8, 0.5, 0, 2), 0.5,
              (("total bilirubin", "high"), ("alkaline phosphatase", "high")),
              ("poor feeding", "inconsolable crying", "vomiting after feeds", "diaper rash", "bulging fontanelle"),
              ("cetamol", "lactin", "profen"), contra=3, avoid_with="infection"),
    Condition("heart failure", 1.0, (70, 10, 30, 100), 0.45,
              (("bnp", "high"), ("troponin i", "high"), ("sodium", "low")),
              ("dyspnea on exertion", "orthopnea", "ankle swelling", "jugular venous distension"),
              ("goxin", "lactone", "vaptan", "olol"), avoid_with="kidney disease", acuity=0.5),
    Condition("asthma", 1.2, (35, 22, 2, 100), 0.55, (("eosinophils", "high"), ("po2", "low")),
              ("wheezing", "shortness of breath", "chest tightness", "night cough"),
              ("terol", "sonide", "lukast", "tropium"), avoid_with="heart failure", acuity=-0.2),
    Condition("anemia", 0.9, (45, 20, 0, 100), 0.65,
              (("hemoglobin", "low"), ("ferritin", "low"), ("mcv", "low")),
              ("pallor", "fatigue", "dizziness on standing", "brittle nails"),
              ("ferrin", "cobalamin", "poetin"), acuity=-0.2),
    Condition("coronary disease", 1.0, (63, 10, 30, 100), 0.35,
              (("ldl cholesterol", "high"), ("total cholesterol", "high"), ("triglycerides", "high")),
              ("chest pain on exertion", "pain radiating to the left arm", "cold sweating"),
              ("statin", "grel", "parin", "xaban"), avoid_with="liver disease", surgery=0.35, acuity=0.3),
    Condition("hypothyroidism", 0.7, (48, 15, 5, 100), 0.75, (("tsh", "high"), ("free t4", "low")),
              ("cold intolerance", "weight gain", "constipation", "dry skin", "hoarse voice"),
              ("thyroxine", "thyronine"), acuity=-0.5),
    Condition("stroke", 0.7, (68, 11, 30, 100), 0.45, (("inr", "high"), ("glucose", "high")),
              ("slurred speech", "one-sided weakness", "facial droop", "sudden confusion"),
              ("teplase", "grel", "parin"), avoid_with="coronary disease", acuity=0.6),
    Condition("epilepsy", 0.6, (30, 18, 0, 100), 0.5, (("prolactin", "high"), ("lactate", "high")),
              ("seizure", "loss of consciousness", "tongue biting", "postictal drowsiness"),
              ("azepine", "racetam", "trigine", "barbital"), contra=1),
    Condition("gout", 0.6, (55, 12, 18, 100), 0.2, (("uric acid", "high"), ("c-reactive protein", "high")),
              ("big toe pain", "red swollen joint", "pain at night"), ("purinol", "cine", "buxostat"), acuity=-0.5),
    Condition("trauma", 0.8, (40, 20, 0, 100), 0.35, (("creatine kinase", "high"), ("hemoglobin", "low")),
              ("after a fall", "limb deformity", "local tenderness", "open wound"),
              ("caine", "codone", "curium"), surgery=0.8, acuity=0.4),
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


#: Labs that a severe stay tends to make abnormal, whatever the condition.
ACUITY_LABS: tuple[tuple[str, str], ...] = (
    ("lactate", "high"), ("albumin", "low"), ("sodium", "low"), ("platelets", "low"), ("inr", "high"),
    ("c-reactive protein", "high"))
#: Note phrases of the four severity levels.
_SEVERITY_WORDS = ("in stable condition", "in fair condition", "in serious condition", "in critical condition")


@dataclass(frozen=True)
class SynthKnobs:
    """Probabilities of the generative process (defaults documented in docs/synthetic-data.md).

    Attributes:
        aligned_fraction: Share of the catalog in the interaction table.
        records_per_patient: Mean stays per patient.
        second_condition: Share of patients with a second condition.
        core_prob: Probability that the primary condition's first-line bundle is chosen first.
        extended_prob: Share of the individual drugs taken from the conditions' extended regimens.
        surgery_drug_prob: Probability that a surgical stay gets a surgery bundle right after
            the first-line one.
        partner_share: Share of the other individual drugs that are synergy partners of a drug
            already in the package (the rest follow a Zipf popularity).
        avoid_antagonism: Probability that an antagonistic pair is avoided (conflicting
            bundles are not combined; of a pair in a package, the weaker drug goes).
        avoid_rule: Probability that a condition-avoided synergistic pair is broken.
        avoid_contra: Probability that a contraindicated drug is dropped.
        hard_fraction: Share of records with a random package.
        null_label_fraction: Share of interaction rows whose label is null.
        lab_signal: Probability that a condition's lab is abnormal in its direction.
        lab_noise: Probability that any lab is abnormal at random (at average severity).
        flag_fraction: Share of labs with a flag set.
        word_prob: Probability of each condition phrase in the note.
        noise_word: Probability of a phrase of a random other condition in the note.
        size_sigma: Standard deviation of the log package size per unit of severity.
        individual_share: Share of the target size left to individual drugs.
        bundle_drop: Probability that a chosen bundle is given without one of its drugs.
        severity_lab: Probability that an acuity lab is abnormal on the most severe stays.
        severity_noise: Standard deviation of the noise on the note's severity words.
    """

    aligned_fraction: float = PAPER_ALIGNED / 1428
    records_per_patient: float = 1.3
    second_condition: float = 0.4
    core_prob: float = 0.75
    extended_prob: float = 0.35
    surgery_drug_prob: float = 0.8
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
    size_sigma: float = 0.55
    individual_share: float = 0.2
    bundle_drop: float = 0.05
    severity_lab: float = 0.5
    severity_noise: float = 0.5


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
        regimens: condition -> drugs of its first-line bundle (aligned pairs labelled synergism).
        contraindications: condition -> drugs avoided for it.
        rules: ``(condition, kept drug, dropped drug)``: a synergistic pair avoided for it.
        severity: ``[R]`` float32 latent severity (standardized: mean 0, sd 1).
        bundles: ``[B]`` protocol bundles, each a tuple of drug names (disjoint).
        condition_bundles: condition -> ids into ``bundles`` it uses, first-line first.
        surgery_bundles: ids into ``bundles`` of surgical stays.
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
    severity: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    bundles: tuple[tuple[str, ...], ...] = ()
    condition_bundles: dict[str, tuple[int, ...]] = field(default_factory=dict)
    surgery_bundles: tuple[int, ...] = ()


# --------------------------------------------------------------------------- the plan


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
    hot = np.union1d(bundles[(bundles >= 0) & aligned[bundles.clip(0)]], np.intersect1d(top, al))
    n_hot = int(min(0.3 * want["antagonism"], 0.03 * len(hot) * (len(hot) - 1) / 2))
    ant = _sample_pairs(hot, n_hot, combinable, rng)
    ant = np.concatenate([ant, _sample_pairs(al, want["antagonism"] - len(ant), combinable, rng)])
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
                 cond_bundles, bun.weight, conflict, exts, contra, rules_arr, ddi, ant, syn_ptr, und[order, 1],
                 compat)


# --------------------------------------------------------------------------- records


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


def _choose_bundles(conds: np.ndarray, surgery: np.ndarray, budget: np.ndarray, live: np.ndarray, plan: _Plan,
                    knobs: SynthKnobs, rng: np.random.Generator) -> np.ndarray:
    """Whole bundles for each record until the budget of drugs is spent.

    The candidates are the bundles of the record's conditions (the second condition's at
    0.7 weight) and, on surgical stays, the surgery bundles. They are taken in a random
    order with probabilities proportional to their weights (Gumbel keys; the primary
    first-line bundle first with probability ``core_prob``, then a surgery bundle with
    ``surgery_drug_prob``); a bundle is taken while half of it still fits in the budget,
    and skipped (``avoid_antagonism``) when it conflicts with one already taken.

    Args:
        conds: ``[n, 2]`` condition ids, ``-1`` for none.
        surgery: ``[n]`` bool.
        budget: ``[n]`` drugs left for bundles.
        live: ``[n]`` bool, records that get bundles (not hard).

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
            ok &= ~((taken & plan.conflict[b]).any(1) & (rng.random(n) < knobs.avoid_antagonism))
        taken[rows[ok], b[ok]] = True
        spent += size * ok
    return taken


def _chunk_packages(conds: np.ndarray, surgery: np.ndarray, target: np.ndarray, hard: np.ndarray, plan: _Plan,
                    knobs: SynthKnobs, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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
    r, b = np.nonzero(_choose_bundles(conds, surgery, budget, live, plan, knobs, rng))
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
        _, d = _chunk_packages(rec["conds"][pilot], rec["surgery"][pilot], t, np.zeros(len(pilot), bool), plan,
                               knobs, np.random.default_rng(seed))
        scale *= mean_package / max(len(d) / len(pilot), 1e-9)
    target = np.clip(np.rint(mean_package * scale * rel), 1, D)
    return np.where(hard, np.clip(rng.poisson(mean_package, len(hard)), 2, D), target).astype(np.int64)


def _packages(rec: dict[str, np.ndarray], plan: _Plan, knobs: SynthKnobs, mean_package: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All packages, in chunks bounded in memory. Returns ``(offsets [R+1], drugs [N], hard [R])``."""
    n, D = len(rec["age"]), len(plan.names)
    hard = rng.random(n) < knobs.hard_fraction
    target = _targets(rec, hard, plan, knobs, mean_package, rng)
    chunk = int(np.clip(2**25 // max(D, len(plan.ant), 1), 256, 16384))
    rs, ds = [], []
    for k, s in enumerate(range(0, n, chunk)):
        e = min(n, s + chunk)
        sub = np.random.default_rng([int(rng.integers(2**63)), k])
        r, d = _chunk_packages(rec["conds"][s:e], rec["surgery"][s:e], target[s:e], hard[s:e], plan, knobs, sub)
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
        regimens={cn[c]: tuple(plan.names[d] for d in plan.bundles[plan.first[c]] if d >= 0) for c in range(len(cn))},
        contraindications={cn[c]: tuple(plan.names[d] for d in row[row >= 0]) for c, row in enumerate(plan.contra)
                           if (row >= 0).any()},
        rules=tuple((cn[c], plan.names[a], plan.names[b]) for c, a, b in plan.rules.tolist()),
        severity=rec["severity"],
        bundles=tuple(tuple(plan.names[d] for d in row if d >= 0) for row in plan.bundles.tolist()),
        condition_bundles={cn[c]: tuple(int(b) for b in row if b >= 0) for c, row in enumerate(plan.cond_bundles)},
        surgery_bundles=tuple(int(b) for b in np.flatnonzero(plan.surgical)),
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
