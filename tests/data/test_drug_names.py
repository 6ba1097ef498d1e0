"""The drug-name string function (dpr_dist/data/drug_names.py): strengths, forms and brackets removed."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpr_dist.data.drug_names import SALT_WORDS, bracket_contents, fold, normalize_drug


@pytest.mark.parametrize("raw, expected", [
    ("Acetaminophen 500 mg", "acetaminophen"),
    ("Acetaminophen 500mg Tablet", "acetaminophen"),
    ("Sodium Chloride 0.9%", "sodium chloride"),
    ("23.4% Sodium Chloride", "sodium chloride"),
    ("Morphine Sulfate 10mg/ml Injection", "morphine sulfate"),
    ("Morphine Sulfate (Oral Solution) 2 mg/mL", "morphine sulfate"),
    ("Clonidine Patch 0.2 mg/24 hr", "clonidine"),
    ("Epinephrine 1:1000", "epinephrine"),
    ("Insulin Regular Human (U-500)", "insulin regular human"),
    ("Albumin 5% (12.5g / 250mL)", "albumin"),
    ("Amoxicillin 250 mg capsule", "amoxicillin"),
    ("Heparin Sodium Injection Vial", "heparin sodium"),
    ("Sodium Chloride (Iso-Osmotic) Solution", "sodium chloride"),
    ("Iso-Osmotic Dextrose", "dextrose"),
    ("Diltiazem Extended-Release", "diltiazem"),
    ("MetFORMIN XR (Glucophage XR)", "metformin"),
    ("Albuterol 0.083% Neb Soln", "albuterol"),
])
def test_strengths_and_forms_are_removed(raw, expected):
    assert normalize_drug(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("Sodium Chloride 0.9%  Flush", "sodium chloride"),
    ("Potassium Chloride (Powder)", "potassium chloride"),
    ("ALPRAZolam", "alprazolam"),
    ("Cétuximab", "cetuximab"),
    ("*NF* Ertapenem Sodium", "ertapenem sodium"),
    ("Lactated Ringer's", "lactated ringers"),
    ("Amoxicillin-Clavulanic Acid", "amoxicillin clavulanic acid"),
    ("NS-2359", "ns2359"),  # a code name stays whole, it must not collide with "NS"
    ("Vial", ""),
    ("Soln.", ""),
    ("", ""),
    (None, ""),
])
def test_case_punctuation_multiword_and_non_drugs(raw, expected):
    assert normalize_drug(raw) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_idempotent_on_any_text(text):
    once = normalize_drug(text)
    assert normalize_drug(once) == once


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["Sodium", "Chloride", "0.9%", "5", "mg", "Tablet", "(Powder)", "10mg/ml",
                                 "Extended", "Release", "Iso-Osmotic", "XL", "/", "Heparin", "1:1000", "U-500",
                                 "Tab", "-", "Vial"]), max_size=8))
def test_idempotent_on_drug_like_text(words):
    once = normalize_drug(" ".join(words))
    assert normalize_drug(once) == once


def test_fold_lowercases_and_strips_accents_and_micro_signs():
    assert fold("Cétuximab 5 µg") == "cetuximab 5 ug"


def test_bracket_contents_are_normalized_names():
    assert bracket_contents("Emtricitabine-Tenofovir (Truvada)") == ["truvada"]
    assert bracket_contents("Heparin (Vial) [Porcine]") == ["porcine"]  # a dosage word alone is no name


def test_salt_words_survive_normalization():
    """Salt stripping runs on normalized names, so a salt word must be one itself."""
    assert [w for w in SALT_WORDS if normalize_drug(w) != w] == []
