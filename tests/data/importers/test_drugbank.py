from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from dpr_dist.data.importers.drugbank import drugbank_ddi_table, import_drugbank_ddi
from dpr_dist.data.interactions import classify_descriptions, load_template_table
from dpr_dist.data.schema import DDI_SCHEMA, REJECTS_SCHEMA

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def shared(*parts: str) -> str:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return str(path)


@pytest.fixture(scope="module")
def files():
    return {"pairs": shared("ddi", "drugbank_ddi_86types.tsv"), "types": shared("ddi", "interaction_types_86.csv"),
            "vocab": shared("vocab", "drugbank_vocabulary.csv")}


@pytest.fixture(scope="module")
def real(files):
    return drugbank_ddi_table(files["pairs"], files["types"], files["vocab"])


def test_every_type_has_exactly_one_table_row(files):
    types = pacsv.read_csv(files["types"])["Interaction type"].to_pylist()
    table = load_template_table()["type"].to_pylist()
    assert len(types) == 86
    assert all(table.count(t) == 1 for t in types)


def test_output_matches_the_contract_and_counts(real, files, tmp_path):
    ddi, rejects, summary = real
    assert ddi.schema == DDI_SCHEMA
    assert rejects.schema == REJECTS_SCHEMA
    assert summary["pairs_read"] == 192284 and summary["drugs"] == 1710 and summary["types"] == 86
    assert summary["seconds"] < 15
    # counts measured on the DeepDDI DrugBank set with the reviewed table (risk templates unlabeled)
    assert summary["labels"] == {"none": 0, "synergism": 99389, "antagonism": 30673}
    assert summary["unlabeled_pairs"] == 61644 and summary["rows"] == ddi.num_rows == 130062
    syn, ant = summary["labels"]["synergism"], summary["labels"]["antagonism"]
    assert 0.70 < syn / (syn + ant) < 0.85  # paper Table 1: 22,986 vs 6,389 (78%)
    keys = pc.binary_join_element_wise(ddi["drug_a"], ddi["drug_b"], "\x00")
    assert len(pc.unique(keys)) == ddi.num_rows  # one row per ordered pair
    assert summary["rejected"] == rejects.num_rows
    missing = rejects.filter(pc.is_in(rejects["field"], value_set=pa.array(["drug1", "drug2"])))
    assert missing.num_rows == 267  # pairs with the 5 ids the vocabulary does not name
    assert all("has no common name" in r for r in missing["reason"].to_pylist())
    conflicts = rejects.filter(pc.equal(rejects["field"], "Label"))
    assert conflicts.num_rows == summary["conflicts"]
    assert all("precedence" in r for r in conflicts["reason"].to_pylist())


def test_written_parquet_keeps_the_schema(files, tmp_path):
    out = import_drugbank_ddi(files["pairs"], files["types"], files["vocab"], str(tmp_path / "ddi"),
                              rejects_out=str(tmp_path / "rejects.parquet"))
    assert out["out"].endswith("ddi/ddi.parquet")
    assert pq.read_schema(out["out"]).remove_metadata() == DDI_SCHEMA
    assert pq.read_table(tmp_path / "rejects.parquet").num_rows == out["rejected"]


def test_subject_column_sets_the_direction(real):
    ddi = real[0]
    row = ddi.filter(pc.and_(pc.equal(ddi["drug_a"], "Acetylsalicylic acid"), pc.equal(ddi["drug_b"], "Warfarin")))
    assert row.to_pylist() == [{"drug_a": "Acetylsalicylic acid", "drug_b": "Warfarin", "label": "synergism",
                                "description": "Acetylsalicylic acid may increase the anticoagulant activities of "
                                               "Warfarin."}]
    reverse = ddi.filter(pc.and_(pc.equal(ddi["drug_a"], "Warfarin"), pc.equal(ddi["drug_b"], "Acetylsalicylic acid")))
    assert reverse.num_rows == 0


def test_descriptions_classify_back_to_the_row(real):
    ddi = real[0]
    sample = ddi.take(pa.array(range(0, ddi.num_rows, 97)))
    got = classify_descriptions(sample["description"])
    assert got["label"].equals(sample["label"])
    assert got["actor"].equals(sample["drug_a"]) and got["affected"].equals(sample["drug_b"])
    assert pc.all(pc.less_equal(got["type"], 86)).as_py()


def test_adverse_policy_emits_undirected_rows_both_ways(files):
    ddi, _, summary = drugbank_ddi_table(files["pairs"], files["types"], files["vocab"], adverse="antagonism")
    assert summary["unlabeled_pairs"] == 0 and summary["adverse_policy"] == "antagonism"
    risk = ddi.filter(pc.match_substring(ddi["description"], "The risk or severity of bleeding"))
    pairs = set(zip(risk["drug_a"].to_pylist(), risk["drug_b"].to_pylist()))
    assert pairs and all((b, a) in pairs for a, b in pairs)
    assert set(risk["label"].to_pylist()) == {"antagonism"}


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_paper_table2_examples_through_the_importer(tmp_path, files):
    """Table 2: Dipyridamole -> Valsartan synergism (A to B); Repaglinide / Doxepin
    antagonism from B (Doxepin) to A, with the newer DrugBank sentence of generic type 902."""
    types = _write(tmp_path / "types.csv",
                   "Interaction type,Description,Subject,DDI type\n"
                   "10,#Drug1 may increase the antihypertensive activities of #Drug2.,1,DDI type 47\n"
                   "902,#Drug1 may decrease the hypoglycemic activities of #Drug2.,2,new\n")
    pairs = _write(tmp_path / "pairs.tsv", "drug1\tdrug2\tLabel\nDB00975\tDB00177\t10\nDB00912\tDB01142\t902\n")
    ddi, rejects, _ = drugbank_ddi_table(pairs, types, files["vocab"])
    assert rejects.num_rows == 0
    assert ddi.to_pylist() == [
        {"drug_a": "Dipyridamole", "drug_b": "Valsartan", "label": "synergism",
         "description": "Dipyridamole may increase the antihypertensive activities of Valsartan."},
        {"drug_a": "Doxepin", "drug_b": "Repaglinide", "label": "antagonism",
         "description": "Doxepin may decrease the hypoglycemic activities of Repaglinide."},
    ]


def test_conflicting_pairs_keep_antagonism_and_report(tmp_path, files):
    types = _write(tmp_path / "types.csv",
                   "Interaction type,Description,Subject\n"
                   "73,The serum concentration of #Drug2 can be increased when it is combined with #Drug1.,2\n"
                   "75,The serum concentration of #Drug2 can be decreased when it is combined with #Drug1.,1\n")
    pairs = _write(tmp_path / "pairs.tsv", "drug1\tdrug2\tLabel\nDB00177\tDB00975\t73\nDB00975\tDB00177\t75\n"
                                           "DB00975\tDB00177\t75\nDB99999\tDB00975\t73\nDB00177\tDB00975\t5\n")
    ddi, rejects, summary = drugbank_ddi_table(pairs, types, files["vocab"])
    assert ddi.to_pylist() == [{"drug_a": "Dipyridamole", "drug_b": "Valsartan", "label": "antagonism",
                                "description": "The serum concentration of Valsartan can be decreased when it is "
                                               "combined with Dipyridamole."}]
    assert summary["conflicts"] == 1 and summary["duplicates_merged"] == 1
    by_row = {r["row"]: (r["field"], r["reason"]) for r in rejects.to_pylist()}
    assert by_row[0] == ("Label", "conflicting label synergism for an ordered pair already labelled antagonism "
                                  "(precedence antagonism > synergism > none)")
    assert by_row[3] == ("drug1", "DrugBank id DB99999 has no common name in the vocabulary")
    assert by_row[4][0] == "Label" and "interaction type 5 is not in" in by_row[4][1]


def test_inconsistent_inputs_raise(tmp_path, files):
    good = "Interaction type,Description,Subject\n6,#Drug1 may increase the anticoagulant activities of #Drug2.,2\n"
    pairs = _write(tmp_path / "pairs.tsv", "drug1\tdrug2\tLabel\nDB00682\tDB00945\t6\n")
    with pytest.raises(ValueError, match=r"no row for interaction type\(s\) \[500\]"):
        drugbank_ddi_table(pairs, _write(tmp_path / "t1.csv", good + "500,#Drug1 x #Drug2.,1\n"), files["vocab"])
    with pytest.raises(ValueError, match="does not recognise the sentence of type 6"):
        drugbank_ddi_table(pairs, _write(tmp_path / "t2.csv", good.replace("anticoagulant", "antiplatelet")),
                           files["vocab"])
    with pytest.raises(ValueError, match="Subject must be 1, 2 or 3"):
        drugbank_ddi_table(pairs, _write(tmp_path / "t3.csv", good.replace(".,2", ".,4")), files["vocab"])
    with pytest.raises(ValueError, match="missing column 'drug2'"):
        drugbank_ddi_table(_write(tmp_path / "p.tsv", "drug1\tLabel\nDB00682\t6\n"),
                           _write(tmp_path / "t4.csv", good), files["vocab"])
