"""Vocabulary of the synthetic EMR generator: constants, labs, conditions and word lists.

Everything here is fixed data: the paper's interaction counts, the lab panel, the named
latent conditions (:class:`Condition`, :data:`CONDITIONS`), the pieces drug names are
built from, spelling variants, and the phrases of admission notes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
