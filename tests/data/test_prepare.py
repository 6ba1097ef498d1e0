"""The Ray Data preparation pipeline, end to end on small synthetic data."""

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dpr_dist.config import load_config
from dpr_dist.data import io
from dpr_dist.data.prepare import prepare
from dpr_dist.data.schema import SchemaError


def _records(out, split):
    return pq.read_table(f"{out}/records/split={split}")


def test_patient_split_disjoint_and_nothing_lost(tiny_prepared, tiny_data):
    out, man = tiny_prepared["dir"], tiny_prepared["manifest"]
    parts = {s: _records(out, s) for s in ("train", "val", "test")}
    patients = {s: set(t["patient_id"].to_pylist()) for s, t in parts.items()}
    for a, b in itertools.combinations(patients, 2):
        assert not patients[a] & patients[b], f"patients in both {a} and {b}"
    n_records = sum(t.num_rows for t in parts.values())
    rejects = pq.read_table(f"{out}/rejects.parquet")
    assert n_records == man["table1"]["records"]
    assert n_records + man["rejected_emr"] == tiny_data["emr_table"].num_rows == man["rows_read"]
    assert rejects.num_rows == man["rejected"]
    frac = len(patients["train"]) / sum(len(p) for p in patients.values())
    assert 0.75 < frac < 0.85


def test_cooccurrence_from_training_split_matches_brute_force(tiny_prepared):
    out = tiny_prepared["dir"]
    train = _records(out, "train")
    vocab = pq.read_table(f"{out}/vocab/drugs.parquet")
    m = vocab.num_rows
    num = np.zeros(m)
    num_ij = np.zeros((m, m))
    for ids in train["drug_ids"].to_pylist():
        for i in ids:
            num[i] += 1
        for i, j in itertools.permutations(ids, 2):
            num_ij[i, j] += 1
    co = pq.read_table(f"{out}/cooccurrence.parquet").to_pandas()
    dense = np.zeros((m, m))
    dense[co["src"], co["dst"]] = co["count"]
    np.testing.assert_array_equal(dense, num_ij)
    np.testing.assert_allclose(co["p"], num_ij[co["src"], co["dst"]] / num[co["src"]], rtol=1e-6)
    np.testing.assert_array_equal(vocab["train_count"].to_numpy(), num)


def test_graph_edges_follow_the_two_criteria(tiny_prepared):
    out, cfg = tiny_prepared["dir"], tiny_prepared["cfg"]
    m = pq.read_table(f"{out}/vocab/drugs.parquet").num_rows
    rel = pq.read_table(f"{out}/relation.parquet").to_pandas()
    R = np.full((m, m), -1)
    R[rel["src"], rel["dst"]] = rel["label"]
    co = pq.read_table(f"{out}/cooccurrence.parquet").to_pandas()
    P = np.zeros((m, m))
    P[co["src"], co["dst"]] = co["p"]
    test = _records(out, "test").to_pylist()
    assert test, "no test records"
    for r in test[:50]:
        ids = r["drug_ids"]
        got = {(ids[a], ids[b]) for a, b in zip(r["edge_src"], r["edge_dst"])}
        want = {(v, u) for v, u in itertools.permutations(ids, 2)
                if R[v, u] != -1 or P[v, u] > cfg.data.build_threshold}
        assert got == want, r["record_id"]


def test_manifest_has_table1(tiny_prepared):
    t1 = tiny_prepared["manifest"]["table1"]
    for key in ("records", "drugs", "disease_document_words", "average_package_size", "aligned_drugs",
                "pairs_no_interaction", "pairs_synergism", "pairs_antagonism"):
        assert key in t1
    assert t1["aligned_drugs"] > 0 and t1["pairs_synergism"] > 0
    assert io.read_json(f"{tiny_prepared['dir']}/manifest.json")["table1"] == t1


def test_bad_rows_quarantined_with_reasons(tiny_data, ray_session, tmp_path):
    emr = tiny_data["emr_table"].slice(0, 60)
    rows = emr.to_pylist()
    rows[0]["age"] = 150.0
    rows[1]["drugs"] = [rows[1]["drugs"][0]]
    rows[2]["record_id"] = rows[3]["record_id"]
    rows[4]["patient_id"] = None
    rows[5]["labs"] = [{"name": "x", "value": 1.0, "ref_low": 3.0, "ref_high": 1.0, "flag": None}]
    bad = pa.Table.from_pylist(rows, schema=pa.schema([pa.field(f.name, f.type) for f in emr.schema]))
    io.write_table(bad, str(tmp_path / "emr" / "part-0.parquet"))
    out = tmp_path / "prep"
    man = prepare(load_config(None, ["data.rows_per_block=16"]), emr=str(tmp_path / "emr"),
                  ddi=tiny_data["ddi"], out=str(out))
    rej = pq.read_table(out / "rejects.parquet").to_pylist()
    by_id = {}
    for r in rej:
        by_id.setdefault(r["record_id"], []).append(r["field"])
    assert by_id[rows[0]["record_id"]] == ["age"]
    assert by_id[rows[1]["record_id"]] == ["drugs"]
    assert by_id[rows[3]["record_id"]] == ["record_id", "record_id"]  # both copies quarantined
    assert by_id[rows[4]["record_id"]] == ["patient_id"]
    assert by_id[rows[5]["record_id"]] == ["labs"]
    assert man["table1"]["records"] + man["rejected_emr"] == 60
    assert man["reject_reasons"]["record_id"] == 2


def test_missing_column_fails_before_any_work(tiny_data, tmp_path):
    emr = tiny_data["emr_table"].slice(0, 5).drop_columns(["drugs"])
    io.write_table(emr, str(tmp_path / "emr.parquet"))
    with pytest.raises(SchemaError, match="drugs"):
        prepare(load_config(), emr=str(tmp_path / "emr.parquet"), ddi=tiny_data["ddi"], out=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_prepare_through_s3(tiny_data, ray_session, s3_server):
    from dpr_dist.data import synth

    emr, ddi = tiny_data["emr_table"].slice(0, 120), tiny_data["ddi_table"]
    synth.write(emr, ddi, "s3://dpr/in")
    man = prepare(load_config(None, ["data.rows_per_block=64"]), emr="s3://dpr/in/emr",
                  ddi="s3://dpr/in/ddi.parquet", out="s3://dpr/prepared")
    assert io.read_json("s3://dpr/prepared/manifest.json")["table1"] == man["table1"]
    fs, path = io.filesystem("s3://dpr/prepared/records/split=train")
    train = pq.read_table(path, filesystem=fs)
    assert train.num_rows == man["splits"]["train"]["records"]
    assert man["table1"]["records"] + man["rejected_emr"] == 120


def test_salt_forms_fold_into_the_bare_name_seen_in_the_emr(tiny_prepared):
    from dpr_dist.data.normalize import SALT_WORDS

    names = set(pq.read_table(f"{tiny_prepared['dir']}/vocab/drugs.parquet")["name"].to_pylist())
    for n in names:
        words = n.split()
        base = " ".join(w for w in words if w not in SALT_WORDS)
        assert base == n or base not in names, f"{n!r} should fold into {base!r}"
