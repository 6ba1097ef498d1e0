"""Patient rows and drug names as the model takes them (no model, no Ray)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from dpr_dist.serve.inputs import PREPARED_COLUMNS, DrugResolver, InputError, patients_table, prepare_table

DOC_VOCAB = pa.array(sorted(["gender:f", "gender:m", "age:elderly", "age:young_adult", "insurance:medicare",
                             "surgery:no", "surgery:yes", "lab:potassium:high", "lab:sodium:low"]))


def patient(**kw) -> dict:
    base = {"record_id": "R1", "patient_id": "P1", "gender": "F", "age": 70.0, "insurance": "Medicare",
            "surgery": False, "labs": [{"name": "Potassium", "value": 6.1, "ref_low": 3.5, "ref_high": 5.1,
                                        "flag": None}], "note": "Chest pain, since 2 days!"}
    return {**base, **kw}


def test_patients_table_accepts_iso_times_and_missing_optionals():
    t = patients_table([patient(admit_time="2024-01-02T03:04:05+02:00"),
                        {"record_id": "R2", "patient_id": "P2", "gender": "m", "age": 30}])
    assert t.num_rows == 2 and "drugs" not in t.column_names
    assert t["admit_time"].to_pylist() == [dt.datetime(2024, 1, 2, 1, 4, 5), None]  # UTC, naive
    assert t["labs"].to_pylist()[1] == []


def test_prepare_table_documents_notes_and_rejects():
    rows = [patient(), patient(record_id="R2", age=130.0, note="secret"),
            patient(record_id="R3", gender="m", age=30.0, surgery=True, insurance="unknown-plan",
                    labs=[{"name": "Sodium", "value": 120.0, "ref_low": 135.0, "ref_high": 145.0, "flag": None}]),
            patient(record_id="R4", labs=[{"name": "K", "value": 1.0, "ref_low": 5.0, "ref_high": 3.0, "flag": None}])]
    prepared, rejects = prepare_table(patients_table(rows), DOC_VOCAB, note_max_len=10, source="api")
    assert prepared.column_names == list(PREPARED_COLUMNS)
    assert prepared["record_id"].to_pylist() == ["R1", "R3"] and prepared["row"].to_pylist() == [0, 2]
    vocab = DOC_VOCAB.to_pylist()
    docs = [sorted(vocab[i] for i in ids) for ids in prepared["doc_ids"].to_pylist()]
    assert docs[0] == ["age:elderly", "gender:f", "insurance:medicare", "lab:potassium:high", "surgery:no"]
    assert docs[1] == ["age:young_adult", "gender:m", "lab:sodium:low", "surgery:yes"]  # unknown tokens dropped
    assert len(prepared["note"].to_pylist()[0]) == 10  # "chest pain" after cleaning, cut to 10
    bad = {r["record_id"]: r for r in rejects.to_pylist()}
    assert bad["R2"]["field"] == "age" and bad["R2"]["row"] == 1 and bad["R2"]["source"] == "api"
    assert bad["R4"]["field"] == "labs"
    assert "secret" not in str(rejects.to_pylist()) and "1.0" not in bad["R4"]["reason"]


def test_prepare_table_needs_the_required_columns():
    from dpr_dist.data.schema import SchemaError

    t = patients_table([patient()]).drop_columns(["age"])
    with pytest.raises(SchemaError, match="age"):
        prepare_table(t, DOC_VOCAB, 10)


def test_drug_names_are_normalized_like_training_data():
    names = ["Metoprolol", "Sodium chloride", "Potassium chloride", "multivitamins"]
    r = DrugResolver(names, [True, True, True, False])
    got = r.resolve(["Metoprolol Tartrate 25 mg Tab", "Sodium Chloride 0.9%  Flush", "NS", "KCl 20 mEq",
                     "Multivitamins", "metoprolol"])
    assert got.tolist() == [0, 1, 2, 3]  # sorted, unique
    assert "Metoprolol" in r and "metoprolol" not in r
    with pytest.raises(InputError) as err:
        r.resolve(["Metoprolol", "Unobtainium 5 mg"], record_id="R1")
    assert err.value.field == "drugs[1]" and "unknown drug" in str(err.value) and "R1" in str(err.value)
    with pytest.raises(InputError, match="not a drug name"):
        r.resolve(["Vial"])
    with pytest.raises(InputError, match="empty"):
        r.resolve([])
