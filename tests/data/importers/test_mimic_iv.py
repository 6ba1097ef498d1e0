from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dpr_dist.data.importers.mimic_iv import SURGICAL_SERVICES, import_mimic_iv, mimic_iv_records
from dpr_dist.data.normalize import normalize_lists
from dpr_dist.data.schema import EMR_SCHEMA, validate_emr

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def demo() -> Path:
    path = SHARED / "mimic-iv-demo-2.2"
    if not (path / "hosp" / "admissions.csv.gz").exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(scope="module")
def imported(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("mimic") / "emr.parquet"
    summary = import_mimic_iv(str(demo), str(out))
    return pq.read_table(out), summary


def _csv(demo: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(demo / "hosp" / f"{name}.csv.gz")


def test_every_admission_is_one_record_with_the_exact_schema(imported, demo):
    records, summary = imported
    assert pq.read_schema(summary["files"][0]).remove_metadata() == EMR_SCHEMA
    assert records.schema.remove_metadata() == EMR_SCHEMA
    adm = _csv(demo, "admissions")
    assert records.num_rows == len(adm) == 275
    ids = records["record_id"].to_pylist()
    assert len(set(ids)) == 275 and set(ids) == set(adm["hadm_id"].astype(str))
    assert summary["admissions"] == summary["records"] == 275 and summary["admissions_dropped"] == 0
    assert records["note"].null_count == 275


def test_demographics_against_the_source_tables(imported, demo):
    records = imported[0].to_pandas().set_index("record_id")
    adm = _csv(demo, "admissions").merge(_csv(demo, "patients"), on="subject_id")
    adm["age"] = adm["anchor_age"] + pd.to_datetime(adm["admittime"]).dt.year - adm["anchor_year"]
    for _, row in adm.sample(12, random_state=0).iterrows():
        rec = records.loc[str(row["hadm_id"])]
        assert rec["patient_id"] == str(row["subject_id"])
        assert rec["age"] == pytest.approx(float(row["age"]))
        assert rec["gender"] == row["gender"]
        assert rec["insurance"] == row["insurance"]
        assert rec["admit_time"] == pd.Timestamp(row["admittime"])


def test_surgery_means_a_surgical_service(imported, demo):
    records = imported[0]
    svc = _csv(demo, "services")
    surgical = set(svc.loc[svc["curr_service"].isin(SURGICAL_SERVICES), "hadm_id"].astype(str))
    got = {r for r, s in zip(records["record_id"].to_pylist(), records["surgery"].to_pylist()) if s}
    assert got == surgical and len(got) == 92
    assert records["surgery"].null_count == 0


def test_labs_are_the_first_result_per_lab_with_ranges_and_flags(imported, demo):
    records = imported[0]
    labs = records["labs"].combine_chunks()
    flat = labs.flatten()
    assert set(flat.field("flag").drop_null().to_pylist()) == {"abnormal"}
    assert flat.field("ref_low").null_count < len(flat) and flat.field("ref_high").null_count < len(flat)
    # ranges are kept only with a value (the contract derives the level from value vs range)
    no_value = pc.is_null(flat.field("value"))
    assert 0 < pc.sum(no_value).as_py() == flat.field("flag").filter(no_value).drop_null().__len__()
    assert flat.field("ref_low").filter(no_value).null_count == pc.sum(no_value).as_py()
    assert int((np.diff(labs.offsets.to_numpy()) > 0).sum()) == 252  # SOURCES.md: labs of 252 admissions

    ev = _csv(demo, "labevents").merge(_csv(demo, "d_labitems"), on="itemid")
    ev = ev[ev["hadm_id"].notna() & (ev["valuenum"].notna() | ev["flag"].notna())]
    ev = ev[ev["fluid"] == "Blood"].sort_values(["charttime", "labevent_id"])
    by_id = dict(zip(records["record_id"].to_pylist(), labs.to_pylist()))
    for label in ("Creatinine", "Potassium", "Hemoglobin"):
        first = ev[ev["label"] == label].groupby("hadm_id").head(1).head(5)
        assert len(first)
        for _, row in first.iterrows():
            entry = [x for x in by_id[str(int(row["hadm_id"]))] if x["name"] == label]
            assert len(entry) == 1
            assert entry[0]["value"] == pytest.approx(row["valuenum"])
            assert entry[0]["ref_low"] == pytest.approx(row["ref_range_lower"])
            assert entry[0]["ref_high"] == pytest.approx(row["ref_range_upper"])
            assert entry[0]["flag"] == (None if pd.isna(row["flag"]) else row["flag"])
    names = flat.field("name").to_pylist()
    assert "Glucose" in names and "Glucose (Urine)" in names  # one label, two fluids


def test_drugs_are_distinct_prescriptions_in_first_given_order(imported, demo):
    records = imported[0]
    rx = _csv(demo, "prescriptions")
    rx["drug"] = rx["drug"].str.strip()
    expected = rx.groupby("hadm_id")["drug"].agg(lambda s: set(s))
    got = dict(zip(records["record_id"].to_pylist(), records["drugs"].to_pylist()))
    assert sum(1 for d in got.values() if not d) == 25  # 275 admissions, 250 with prescriptions
    for hadm, drugs in expected.items():
        assert len(got[str(hadm)]) == len(set(got[str(hadm)])) and set(got[str(hadm)]) == drugs
    hadm = expected.index[0]
    first = rx[rx["hadm_id"] == hadm].sort_values(["starttime", "drug"]).drop_duplicates("drug")["drug"].tolist()
    assert got[str(hadm)] == first


def test_all_admissions_are_accounted_for_by_the_validator(imported):
    records = imported[0]
    n_drugs = pc.fill_null(pc.list_value_length(normalize_lists(records["drugs"])), 0).to_numpy()
    good, rejects = validate_emr(records, n_drugs, min_drugs=2)
    assert good.sum() + rejects.num_rows == 275
    assert set(rejects["field"].to_pylist()) == {"drugs"}  # only the admissions without a package


def test_streaming_result_does_not_depend_on_block_or_compaction(imported, demo):
    small, summary = mimic_iv_records(str(demo), block_size=1 << 16, compact_rows=500)
    assert small.equals(imported[0].replace_schema_metadata(None))
    assert summary["lab_rows_read"] == 107727 and summary["lab_rows_without_hadm"] == 28420


def test_directory_output_replaces_old_parts(demo, tmp_path):
    out = tmp_path / "emr"
    first = import_mimic_iv(str(demo), str(out), rows_per_file=100)
    assert [Path(f).name for f in first["files"]] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    (out / "keep.txt").write_text("not ours")
    second = import_mimic_iv(str(demo), str(out), rows_per_file=200)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "part-00000.parquet", "part-00001.parquet"]
    assert sum(pq.read_metadata(f).num_rows for f in second["files"]) == 275


def test_missing_table_is_named(tmp_path):
    (tmp_path / "hosp").mkdir()
    with pytest.raises(FileNotFoundError, match="admissions"):
        mimic_iv_records(str(tmp_path))


def test_writes_to_s3(demo, s3_server):
    out = "s3://dpr/mimic/emr.parquet"
    summary = import_mimic_iv(str(demo), out)
    from dpr_dist.data import io

    table = io.read_table(out)
    assert table.num_rows == summary["records"] == 275
    assert table.schema.remove_metadata() == EMR_SCHEMA


def _mini_root(tmp_path: Path) -> Path:
    """A hand-made MIMIC-IV layout (plain .csv) with the edge cases the demo lacks."""
    hosp = tmp_path / "mini" / "hosp"
    hosp.mkdir(parents=True)
    files = {
        "patients": "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n1,F,30,2100,x,\n2,M,91,2150,x,\n",
        "admissions": "subject_id,hadm_id,admittime,insurance\n1,11,2102-05-01 10:00:00,Medicaid\n"
                      "1,12,2100-01-01 00:00:00,Other\n2,21,2150-12-31 23:00:00,Medicare\n3,31,2100-01-01 00:00:00,\n",
        "services": "subject_id,hadm_id,transfertime,prev_service,curr_service\n1,11,t,,MED\n1,11,t,MED,CSURG\n"
                    "2,21,t,,MED\n",
        "procedures_icd": "subject_id,hadm_id,seq_num,chartdate,icd_code,icd_version\n2,21,1,d,3961,9\n",
        "d_labitems": "itemid,label,fluid,category\n100,Glucose,Blood,c\n101,Glucose,Urine,c\n102,Sodium,Blood,c\n",
        "labevents": "labevent_id,subject_id,hadm_id,itemid,charttime,valuenum,ref_range_lower,ref_range_upper,flag\n"
                     "1,1,11,100,2102-05-01 12:00:00,150,70,100,abnormal\n"
                     "2,1,11,100,2102-05-01 11:00:00,90,70,100,\n"       # earlier: this one is kept
                     "3,1,11,101,2102-05-01 11:00:00,,1,2,abnormal\n"    # no value: flag kept, range dropped
                     "4,1,11,102,2102-05-01 11:00:00,140,145,135, \n"    # inverted range dropped, blank flag null
                     "5,1,11,999,2102-05-01 11:00:00,inf,,,abnormal\n"   # unknown item, non-finite value
                     "6,1,,100,2102-05-01 11:00:00,50,70,100,abnormal\n"  # no hadm_id: dropped
                     "7,2,21,102,2151-01-01 00:00:00,,,,\n",              # neither value nor flag: dropped
        "prescriptions": "subject_id,hadm_id,starttime,drug_type,drug\n1,11,2102-05-02 00:00:00,MAIN,Heparin\n"
                         "1,11,2102-05-01 00:00:00,BASE, D5W \n1,11,2102-05-03 00:00:00,MAIN,D5W\n"
                         "1,11,,MAIN,Aspirin\n1,,2102-05-01 00:00:00,MAIN,Lost\n2,21,2151-01-01 00:00:00,MAIN,\n",
    }
    for name, text in files.items():
        (hosp / f"{name}.csv").write_text(text)
    return tmp_path / "mini"


def test_edge_cases_on_a_hand_made_root(tmp_path):
    records, summary = mimic_iv_records(str(_mini_root(tmp_path)))
    assert records.schema == EMR_SCHEMA
    assert records["record_id"].to_pylist() == ["11", "12", "21"]  # 31 has no patient row
    assert summary["admissions_dropped"] == 1
    assert records["age"].to_pylist() == [32.0, 30.0, 91.0]
    assert records["insurance"].to_pylist() == ["Medicaid", "Other", "Medicare"]
    assert records["surgery"].to_pylist() == [True, False, False]
    assert records["drugs"].to_pylist() == [["D5W", "Heparin", "Aspirin"], [], []]
    labs = records["labs"].to_pylist()
    assert labs[1] == [] and labs[2] == []
    assert labs[0] == [
        {"name": "999", "value": None, "ref_low": None, "ref_high": None, "flag": "abnormal"},
        {"name": "Glucose", "value": 90.0, "ref_low": 70.0, "ref_high": 100.0, "flag": None},
        {"name": "Glucose (Urine)", "value": None, "ref_low": None, "ref_high": None, "flag": "abnormal"},
        {"name": "Sodium", "value": 140.0, "ref_low": None, "ref_high": None, "flag": None},
    ]
    assert summary["lab_rows_without_hadm"] == 1 and summary["lab_rows_without_value_or_flag"] == 1
    assert summary["prescriptions_without_hadm"] == 1 and summary["prescriptions_without_drug"] == 1
    main_only, _ = mimic_iv_records(str(_mini_root(tmp_path / "b")), drug_types=["MAIN"],
                                    surgery_from_procedures=True)
    assert main_only["drugs"].to_pylist()[0] == ["Heparin", "D5W", "Aspirin"]
    assert main_only["surgery"].to_pylist() == [True, False, True]
