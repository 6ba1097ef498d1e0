import numpy as np
import pyarrow as pa
import pytest

from dpr_dist.data.schema import (
    EMR_REQUIRED, EMR_SCHEMA, SchemaError, check_columns, conform, validate_emr)


def _lab(name="glucose", value=1.0, lo=0.0, hi=2.0, flag=None):
    return {"name": name, "value": value, "ref_low": lo, "ref_high": hi, "flag": flag}


def _rows():
    base = dict(patient_id="p", gender="F", age=40.0, insurance="x", surgery=False, labs=[_lab()],
                note="secret note text", drugs=["a", "b"], admit_time=None)
    rows = [
        dict(base, record_id="ok"),
        dict(base, record_id=None),
        dict(base, record_id="no-patient", patient_id=""),
        dict(base, record_id="no-gender", gender=None),
        dict(base, record_id="old", age=130.0),
        dict(base, record_id="neg", age=-1.0),
        dict(base, record_id="no-drugs", drugs=None),
        dict(base, record_id="one-drug", drugs=["a"]),
        dict(base, record_id="bad-flag", labs=[_lab(), _lab(flag="weird")]),
        dict(base, record_id="bad-range", labs=[_lab(lo=5.0, hi=1.0)]),
        dict(base, record_id="nan-value", labs=[_lab(value=float("nan"))]),
    ]
    return conform(pa.Table.from_pylist(rows), EMR_SCHEMA, EMR_REQUIRED, "test")


def test_each_bad_row_kind_lands_in_rejects_with_reason():
    t = _rows()
    counts = np.array([2, 2, 2, 2, 2, 2, 0, 1, 2, 2, 2])
    good, rejects = validate_emr(t, counts)
    assert good.tolist() == [True] + [False] * 10
    by_row = {r["row"]: r for r in rejects.to_pylist()}
    assert by_row[1]["field"] == "record_id"
    assert by_row[2]["field"] == "patient_id"
    assert by_row[3]["field"] == "gender"
    assert by_row[4]["field"] == "age" and "range" in by_row[4]["reason"]
    assert by_row[5]["field"] == "age"
    assert by_row[6]["field"] == "drugs"
    assert by_row[7]["field"] == "drugs" and "fewer than 2" in by_row[7]["reason"]
    assert by_row[8]["field"] == "labs" and "position 1" in by_row[8]["reason"]
    assert by_row[9]["field"] == "labs"
    assert by_row[10]["field"] == "labs"
    assert by_row[4]["record_id"] == "old"
    # privacy: no note text or lab values in the reasons
    assert not any("secret" in r["reason"] for r in rejects.to_pylist())


def test_missing_required_column_fails_fast():
    t = pa.table({"record_id": ["1"], "patient_id": ["p"], "gender": ["F"], "drugs": [["a", "b"]]})
    with pytest.raises(SchemaError, match="age"):
        check_columns(t.schema, EMR_SCHEMA, EMR_REQUIRED, "EMR")
    with pytest.raises(SchemaError, match="age"):
        conform(t, EMR_SCHEMA, EMR_REQUIRED, "EMR")


def test_wrong_type_fails_fast_naming_the_column():
    t = pa.table({"record_id": ["1"], "patient_id": ["p"], "gender": ["F"], "age": ["forty"],
                  "drugs": [["a", "b"]]})
    with pytest.raises(SchemaError, match="'age'"):
        check_columns(t.schema, EMR_SCHEMA, EMR_REQUIRED, "EMR")


def test_csv_style_columns_are_parsed():
    t = pa.table({"record_id": ["1"], "patient_id": ["p"], "gender": ["F"], "age": [3],
                  "drugs": ["Aspirin| heparin |"], "labs": ['[{"name": "k", "value": 6, "ref_low": 3.5, '
                                                              '"ref_high": 5.0, "flag": null}]']})
    out = conform(t, EMR_SCHEMA, EMR_REQUIRED, "EMR")
    assert out.schema.equals(pa.schema([pa.field(f.name, f.type) for f in EMR_SCHEMA]))
    assert out["drugs"].to_pylist() == [["Aspirin", "heparin"]]
    assert out["labs"].to_pylist()[0][0]["ref_high"] == 5.0
    assert out["age"].to_pylist() == [3.0]
