from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from dpr_dist.data.interactions import (
    ADVERSE_POLICIES, TEMPLATE_SCHEMA, classify_description, classify_descriptions, fill_missing_labels, label_code,
    label_codes, load_template_table)
from dpr_dist.data.schema import DDI_LABELS, REJECTS_SCHEMA

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
RESOURCE = Path(__file__).resolve().parents[2] / "dpr_dist" / "data" / "resources" / "ddi_templates.csv"


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def test_packaged_table_covers_the_86_types_once():
    t = load_template_table()
    assert t.schema.remove_metadata() == TEMPLATE_SCHEMA
    assert t.schema.metadata[b"version"] == b"1"
    types = t["type"].to_pylist()
    assert len(types) == len(set(types))
    assert set(range(1, 87)) <= set(types)
    assert all(label in DDI_LABELS for label in t["label"].drop_null().to_pylist())
    kinds = dict(zip(types, t["kind"].to_pylist()))
    labels = dict(zip(types, t["label"].to_pylist()))
    dirs = dict(zip(types, t["direction"].to_pylist()))
    # the adverse "risk or severity" templates are unlabeled by default, everything else is labelled
    assert {k for k, v in labels.items() if v is None} == {k for k, v in kinds.items() if v == "risk"}
    assert {k for k, v in kinds.items() if v == "risk" and k <= 86} == {31, 33, 42, 49, 50, 56, 66, 86}
    # paper rule: raising the effect / serum level is synergism, lowering it antagonism
    assert labels[10] == "synergism" and labels[72] == "synergism" and labels[47] == "synergism"
    assert labels[37] == "antagonism" and labels[65] == "antagonism" and labels[4] == "antagonism"
    assert all(dirs[k] == "both" for k in (31, 33, 42, 49, 50, 56, 66)) and dirs[86] == "forward"


@pytest.mark.parametrize("policy", ADVERSE_POLICIES)
def test_adverse_policy_relabels_only_adverse_kinds(policy):
    base = load_template_table()
    t = load_template_table(adverse=policy)
    assert t.schema.metadata[b"adverse"] == policy.encode()
    risk = pc.equal(t["kind"], "risk")
    expected = None if policy == "unlabeled" else policy
    assert set(t.filter(risk)["label"].to_pylist()) == {expected}
    assert t.filter(pc.invert(risk))["label"].equals(base.filter(pc.invert(risk))["label"])
    tox = load_template_table(adverse=policy, adverse_kinds=("risk", "toxicity"))
    assert set(tox.filter(pc.equal(tox["kind"], "toxicity"))["label"].to_pylist()) == {expected}


def test_bad_policy_and_kinds_raise():
    with pytest.raises(ValueError, match="adverse policy"):
        load_template_table(adverse="bad")
    with pytest.raises(ValueError, match="adverse_kinds"):
        load_template_table(adverse="none", adverse_kinds=("nonsense",))


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows + [rows[-1]], "appears twice"),
    (lambda rows: [rows[0].replace(",synergism,", ",great,", 1)] + rows[1:], "column 'label'"),
    (lambda rows: [rows[0].replace(",forward,", ",sideways,", 1)] + rows[1:], "column 'direction'"),
    (lambda rows: [rows[0].replace(",toxicity,", ",bad,", 1)] + rows[1:], "column 'kind'"),
    (lambda rows: [rows[0].replace("(?P<d1>", "(?P<x>", 1)] + rows[1:], "d1 and d2"),
    (lambda rows: [rows[0].replace("(?P<d1>.+?)", "(?P<d1>.+?", 1)] + rows[1:], "does not compile"),
    (lambda rows: ["x" + rows[0]] + rows[1:], "column 'type'"),
])
def test_malformed_table_errors_name_the_line(tmp_path, edit, message):
    lines = RESOURCE.read_text().splitlines()
    head = [ln for ln in lines if ln.startswith("#") or ln.startswith("type,")]
    rows = [ln for ln in lines if ln and not ln.startswith("#") and not ln.startswith("type,")]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(head + edit(rows)) + "\n")
    with pytest.raises(ValueError, match=message) as err:
        load_template_table(str(path))
    assert "line" in str(err.value) or "column" in str(err.value)


def test_alternative_table_path(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("# version: 7\ntype,label,direction,kind,pattern,rationale\n"
                    "1,none,both,effect,^(?P<d1>.+?) and (?P<d2>.+?) do not interact\\.?$,own table\n")
    t = load_template_table(str(path))
    assert t.num_rows == 1 and t.schema.metadata[b"version"] == b"7"
    got = classify_description("Amoxicillin and Oseltamivir do not interact.", t)
    assert (got.label, got.symmetric) == ("none", True)


def test_paper_table2_examples():
    got = classify_description("Dipyridamole may increase the antihypertensive activities of Valsartan.")
    assert (got.label, got.actor, got.affected, got.symmetric) == ("synergism", "Dipyridamole", "Valsartan", False)
    got = classify_description("Doxepin may decrease the hypoglycemic activities of Repaglinide.")
    assert (got.label, got.actor, got.affected) == ("antagonism", "Doxepin", "Repaglinide")


def test_paper_table7_excretion_examples():
    got = classify_description("Cefazolin may decrease the excretion rate of Potassium Chloride which could "
                               "result in a higher serum level.")
    assert (got.type, got.label, got.actor, got.affected) == (72, "synergism", "Cefazolin", "Potassium Chloride")
    got = classify_description("Ephedrine may increase the excretion rate of Methylprednisolone which could result "
                               "in a lower serum level and potentially a reduction in efficacy.")
    assert (got.type, got.label, got.actor) == (65, "antagonism", "Ephedrine")


def test_passive_sentences_put_the_acting_drug_first():
    got = classify_description("The metabolism of Warfarin can be decreased when combined with Fluconazole.")
    assert (got.type, got.label, got.actor, got.affected) == (47, "synergism", "Fluconazole", "Warfarin")
    got = classify_description("the serum concentration of Digoxin can be increased when it is combined with "
                               "Verapamil")  # case and final period do not matter
    assert (got.type, got.actor) == (73, "Verapamil")
    got = classify_description("The risk or severity of bleeding can be increased when Warfarin is combined "
                               "with Aspirin.")
    assert (got.type, got.label, got.symmetric) == (66, None, True)
    assert classify_description("no template here") == (None, None, None, None, False)
    assert classify_description(None).type is None


def test_every_types_file_sentence_reads_back_as_its_own_type():
    types = pacsv.read_csv(shared("ddi", "interaction_types_86.csv"))
    table = load_template_table()
    specific = table.filter(pc.less_equal(table["type"], 86))
    for t, text in zip(types["Interaction type"].to_pylist(), types["Description"].to_pylist()):
        sentence = text.replace("#Drug1", "Alpha-1 drug").replace("#Drug2", "Beta (B) drug")
        got = classify_description(sentence)
        assert got.type == t, (t, sentence)
        assert (got.actor, got.affected) == ("Alpha-1 drug", "Beta (B) drug") or got.symmetric
        # exactly one of the 86 specific patterns recognises it
        matches = [int(ty) for ty, pat in zip(specific["type"].to_pylist(), specific["pattern"].to_pylist())
                   if pc.match_substring_regex(pa.array([sentence]), pat, ignore_case=True)[0].as_py()]
        assert matches == [t]


def test_vectorized_classification_matches_scalar():
    texts = ["Doxepin may decrease the hypoglycemic activities of Repaglinide.", None, "nothing",
             "The metabolism of Warfarin can be decreased when combined with Fluconazole.",
             "The risk or severity of QTc prolongation can be increased when A is combined with B.",
             "X may increase the central nervous system depressant (CNS depressant) and hypertensive activities of Y."]
    vec = classify_descriptions(pa.chunked_array([texts]))
    for row, text in zip(vec.to_pylist(), texts):
        one = classify_description(text)
        assert (row["type"], row["label"], row["actor"], row["affected"], row["symmetric"]) == tuple(one)
    assert vec["type"].to_pylist()[-1] == 79


def test_label_codes():
    assert [label_code(x) for x in ("none", "synergism", "antagonism", " Synergism ", "other", None)] == [
        0, 1, 2, 1, -1, -1]
    codes = label_codes(pa.array(["antagonism", None, "NONE", "x", "synergism"]))
    assert codes.dtype == np.int8 and codes.tolist() == [2, -1, 0, -1, 1]


def _ddi():
    return pa.table({
        "drug_a": ["A", "Repaglinide", "Warfarin", "X", "P", "Q", "Fluconazole", "M"],
        "drug_b": ["B", "Doxepin", "Aspirin", "Y", "Q2", "R", "Warfarin", "N"],
        "label": ["synergism", None, None, None, None, None, None, None],
        "description": [None, "Doxepin may decrease the hypoglycemic activities of Repaglinide.",
                        "The risk or severity of bleeding can be increased when Warfarin is combined with Aspirin.",
                        "blah", "Z may increase the sedative activities of Q2", "  ",
                        "The metabolism of warfarin can be decreased when combined with fluconazole.", None],
    })


def test_fill_missing_labels_classifies_orients_and_rejects():
    out, rejects = fill_missing_labels(_ddi(), source="test.parquet")
    rows = {(r["drug_a"], r["drug_b"]): r["label"] for r in out.to_pylist()}
    assert rows == {("A", "B"): "synergism", ("Doxepin", "Repaglinide"): "antagonism",
                    ("Fluconazole", "Warfarin"): "synergism"}
    assert rejects.schema == REJECTS_SCHEMA
    got = {r["row"]: (r["record_id"], r["field"], r["reason"]) for r in rejects.to_pylist()}
    assert set(got) == {2, 3, 4, 5, 7}
    assert got[2][1] == "label" and "type 66 is unlabeled" in got[2][2]
    assert got[3] == ("X->Y", "description", "label is missing and the description matches no interaction template")
    assert got[4][1:] == ("description", "the description names drugs other than drug_a and drug_b")
    assert got[5][1] == got[7][1] == "label" and "no description" in got[7][2]
    assert set(rejects["source"].to_pylist()) == {"test.parquet"}


def test_fill_missing_labels_undirected_policy_adds_the_reverse_row():
    out, rejects = fill_missing_labels(_ddi(), load_template_table(adverse="antagonism"))
    rows = {(r["drug_a"], r["drug_b"]): r["label"] for r in out.to_pylist()}
    assert rows[("Warfarin", "Aspirin")] == rows[("Aspirin", "Warfarin")] == "antagonism"
    assert 2 not in rejects["row"].to_pylist()


def test_fill_missing_labels_without_missing_is_identity():
    t = _ddi().slice(0, 1)
    out, rejects = fill_missing_labels(t)
    assert out.to_pylist() == t.to_pylist() and rejects.num_rows == 0


def test_fill_missing_labels_names_missing_columns():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['description'\]"):
        fill_missing_labels(_ddi().drop_columns(["description"]), source="x.parquet")


def test_explicit_no_interaction_sentence_is_none_both_ways():
    from dpr_dist.data.interactions import classify_description as _classify

    c = _classify("No interaction is known between Abacor and Bemidol.")
    assert c.label == "none" and c.symmetric and (c.actor, c.affected) == ("Abacor", "Bemidol")
