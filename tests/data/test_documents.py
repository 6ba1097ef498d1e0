import numpy as np
import pyarrow as pa

from dpr_dist.data.documents import NOTE_OTHER, age_group, disease_documents, encode_notes, lab_levels
from dpr_dist.data.schema import LAB_TYPE


def _lab(flag, value=None, lo=None, hi=None, name="Glucose"):
    return {"name": name, "value": value, "ref_low": lo, "ref_high": hi, "flag": flag}


def test_lab_levels_from_flag_or_range():
    labs = pa.array([[_lab("high"), _lab(None, 120, 65, 99), _lab("abnormal", 50, 65, 99),
                      _lab("abnormal"), _lab(None, 80, 65, 99), _lab(None)]], pa.list_(LAB_TYPE))
    levels, bad, _ = lab_levels(labs)
    assert levels.to_pylist() == [["high", "high", "low", "abnormal", "normal", None]]
    assert not bad.any()


def test_disease_document_tokens():
    t = pa.table({"gender": ["Female"], "age": [4.0], "insurance": ["Basic medical insurance"],
                  "surgery": [None],
                  "labs": pa.array([[_lab(None, 20, 1, 10, "Anion gap"), _lab("normal", name="K")]],
                                   pa.list_(LAB_TYPE))})
    doc = disease_documents(t).to_pylist()[0]
    assert doc == ["gender:female", "age:child", "insurance:basic_medical_insurance", "surgery:unknown",
                   "lab:anion_gap:high"]


def test_age_groups_and_notes():
    assert list(age_group(np.array([0.5, 15, 70]))) == ["infant", "teenager", "elderly"]
    ids = encode_notes(pa.array(["Fever, 4 days!", None, "é"]), 5).to_pylist()
    assert len(ids[0]) == 5 and ids[1] == [] and ids[2] == [NOTE_OTHER]
