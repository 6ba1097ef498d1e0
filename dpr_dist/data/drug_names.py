"""Drug-name normalization as a pure string function: :func:`normalize_drug`.

Lowercase, accents and bracketed remarks removed, strengths (``500 mg``, ``0.9%``,
``10mg/ml``, ``1:1000``) and dosage forms / routes / release types (``tablet``,
``injection``, ``vial``, ``soln``, ``iso-osmotic``, ``XL``, ``IV``, ...) dropped, punctuation
turned into spaces. Multi-word names stay whole (``"Sodium Chloride 0.9%  Flush"`` ->
``"sodium chloride"``). It is idempotent.

The word lists it uses are here too, with the salt words and clinical aliases that
:class:`~dpr_dist.data.normalize.DrugNormalizer` uses to map a normalized name to an
interaction drug.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Mapping

__all__ = ["CLINICAL_ALIASES", "DOSAGE_PHRASES", "DOSAGE_WORDS", "SALT_WORDS", "bracket_contents", "fold",
           "normalize_drug"]

#: Whole words (after lowercasing and punctuation removal) that name a dosage form, a
#: route, a release type, a device or a packaging, never the active ingredient.
DOSAGE_WORDS = frozenset("""
    tablet tablets tab tabs caplet capsule capsules cap caps gelcap softgel chewable
    disintegrating dispersible effervescent sprinkles wafer wafers granules lozenge lozenges
    troche pastille injection injectable inj infusion vial vials ampule ampul bag bags
    premix piggyback flush syringe syringes cassette cartridge kit pump
    solution soln sol suspension susp syrup elixir liquid concentrate emulsion tincture
    cream ointment oint gel jelly lotion paste foam shampoo patch patches powder spray
    drops drop neb nebulizer nebulized inhaler inhalation inhal mdi hfa diskus respimat
    suppository suppositories supp supps enema douche viscous
    oral po iv ivpb im sc subq subcut sl intravenous intramuscular subcutaneous sublingual
    nasal ophth ophthalmic opth otic topical rectal vaginal vag dental transdermal buccal
    er xr xl sr cr la ec dr odt ir ds ss pca
    isotonic hypertonic hypotonic isoosmotic
""".split())

#: Multi-word dosage phrases, removed before the single words (same normalization).
DOSAGE_PHRASES = (
    "extended release", "delayed release", "sustained release", "immediate release",
    "controlled release", "modified release", "once daily", "iso osmotic", "preservative free",
    "preserv free", "sugar free", "alcohol free", "for injection", "in water",
)

#: Counter-ions, salts, hydrates and prodrug esters that name a form of the same drug.
SALT_WORDS = frozenset("""
    hydrochloride hcl dihydrochloride hydrobromide hbr sodium sod na disodium potassium
    calcium magnesium sulfate sulphate bisulfate succinate succ tartrate bitartrate maleate
    mesylate besylate besilate citrate acetate diacetate phosphate gluconate bromide chloride
    iodide fumarate hyclate monohydrate monohyd dihydrate trihydrate hemihydrate hydrate
    anhydrous xinafoate propionate dipropionate valerate oxalate nitrate lactate decanoate
    tromethamine meglumine acetonide proxetil axetil palmitate stearate estolate
    ethylsuccinate pamoate carbonate bicarbonate polacrilex
""".split())

#: Clinical abbreviations and US names whose DrugBank name differs. Keys and values are
#: normalized names; a value is used only when it is a known name of the normalizer.
CLINICAL_ALIASES: Mapping[str, str] = {
    # abbreviations of fluids and common products
    "ns": "sodium chloride", "nacl": "sodium chloride", "normal saline": "sodium chloride",
    "saline": "sodium chloride", "kcl": "potassium chloride", "sw": "water", "sterile water": "water",
    "dextrose": "dextrose unspecified form", "glucose": "dextrose unspecified form",
    "d5w": "dextrose unspecified form", "d10w": "dextrose unspecified form",
    "insulin": "insulin human", "insulin regular": "insulin human", "regular insulin": "insulin human",
    "insulin human regular": "insulin human", "insulin regular human": "insulin human",
    "albumin": "albumin human", "asa": "acetylsalicylic acid", "apap": "acetaminophen",
    "milk of magnesia": "magnesium hydroxide",
    # US adopted names whose DrugBank (INN) name differs
    "aspirin": "acetylsalicylic acid", "paracetamol": "acetaminophen", "albuterol": "salbutamol",
    "levalbuterol": "levosalbutamol", "torsemide": "torasemide", "ethacrynic acid": "etacrynic acid",
    "benztropine": "benzatropine", "cosyntropin": "tetracosactide", "glycopyrrolate": "glycopyrronium",
    "pamidronate": "pamidronic acid", "alendronate": "alendronic acid", "risedronate": "risedronic acid",
    "zoledronate": "zoledronic acid", "ibandronate": "ibandronic acid", "phytonadione": "phylloquinone",
    "vitamin k": "phylloquinone", "vitamin d3": "cholecalciferol", "vitamin d2": "ergocalciferol",
    "ursodiol": "ursodeoxycholic acid", "glutamine": "l glutamine", "isoproterenol": "isoprenaline",
    "mesalamine": "mesalazine", "cromolyn": "cromoglicic acid", "valproate": "valproic acid",
    "divalproex": "valproic acid", "acetaminophen": "paracetamol",
}

_BRACKETS = re.compile(r"\([^()]*\)|\[[^\[\]]*\]|\{[^{}]*\}")
_STARRED = re.compile(r"\*[^*]*\*")
_UNIT = (r"(?:%|mcg|ug|mg|gm|g|grams?|kg|ml|l|meq|mmol|mol|units?|iu|u|mu|million\s+units?|"
         r"mosm|mm|cm|hr|h|day|d|dose|doses|actuations?|act|puffs?|sprays?|drops?|tabs?|caps?|m2)")
_STRENGTH = re.compile(
    r"(?<![a-z0-9.])\d+(?:[.,]\d+)?\s*" + _UNIT
    + r"(?![a-z])(?:\s*/\s*(?:\d+(?:[.,]\d+)?\s*)?" + _UNIT + r"(?![a-z]))*")
_PER_UNIT = re.compile(r"(?<![a-z0-9])/\s*" + _UNIT + r"(?![a-z])")
_RATIO = re.compile(r"(?<![a-z0-9.])\d+(?:\.\d+)?\s*:\s*\d+(?:\.\d+)?")
_U_STRENGTH = re.compile(r"(?<![a-z0-9])u-?\d+(?![a-z0-9])")
_CODE_HYPHEN = re.compile(r"(?<=[a-z])-(?=\d)")
_APOSTROPHE = re.compile(r"['\u2018\u2019`]")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def fold(text: str) -> str:
    """Lowercase and strip accents (``Cétuximab`` -> ``cetuximab``, ``µg`` -> ``ug``)."""
    text = unicodedata.normalize("NFKD", text.replace("\u00b5", "u").replace("\u03bc", "u"))
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def _clean_once(text: str) -> str:
    text = _STARRED.sub(" ", text)
    prev = None
    while prev != text:  # nested brackets, innermost first
        prev, text = text, _BRACKETS.sub(" ", text)
    text = _RATIO.sub(" ", text)
    text = _STRENGTH.sub(" ", text)
    text = _PER_UNIT.sub(" ", text)
    text = _U_STRENGTH.sub(" ", text)
    text = _CODE_HYPHEN.sub("", text)  # code names stay whole: "ns-2359" -> "ns2359"
    text = _APOSTROPHE.sub("", text)
    text = " ".join(_NON_ALNUM.sub(" ", text).split())
    for phrase in DOSAGE_PHRASES:
        text = re.sub(rf"(?<![a-z0-9]){phrase}(?![a-z0-9])", " ", text)
    words = [w for w in text.split() if w not in DOSAGE_WORDS and not _NUMBER.match(w)]
    return " ".join(words)


def normalize_drug(name: str | None) -> str:
    """Normalize one drug name (pure, idempotent).

    Args:
        name: A raw name such as ``"Sodium Chloride 0.9%  Flush"`` or ``"MetFORMIN XR
            (Glucophage XR)"``.

    Returns:
        The lowercase name without strengths, forms, brackets and punctuation
        (``"sodium chloride"``, ``"metformin"``); ``""`` when nothing drug-like remains
        (``"Vial"``, ``"Bag"``) or ``name`` is None.
    """
    if not name:
        return ""
    text = fold(str(name))
    prev = None
    while prev != text:  # fixpoint: removing one part can expose another
        prev, text = text, _clean_once(text)
    return text


def bracket_contents(name: str) -> list[str]:
    """Normalized contents of the bracketed parts of a raw name (brand names, mostly)."""
    return [n for n in (normalize_drug(m[1:-1]) for m in _BRACKETS.findall(fold(name))) if n]
