"""Explanations: pair selection, descriptions and their fallback, warnings, model factors."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest
import torch

from dpr_dist.config import ModelConfig
from dpr_dist.data.documents import NOTE_VOCAB_SIZE
from dpr_dist.data.graphs import ANTAGONISM, NONE, SYNERGISM, PairTable
from dpr_dist.models.dpr import DPR
from dpr_dist.serve.explain import (
    HOW_TO_READ, Descriptions, antagonism_warnings, explain_package, explain_packages, fallback_description,
    how_to_read, labelled_pairs, load_descriptions, write_descriptions)

M = 8
NAMES = np.array([f"drug{i}" for i in range(M)], dtype=object)
MODEL = ModelConfig(mlp_out=4, char_dim=4, lstm_hidden=4, drug_dim=8, hidden=16, edge_dim=4)


def pairs(entries: dict[tuple[int, int], object], dtype) -> PairTable:
    keys = np.array([a * M + b for a, b in entries], np.int64)
    vals = np.array(list(entries.values()), dtype)
    order = np.argsort(keys)
    return PairTable(M, keys[order], vals[order])


# 0->1 synergism, 2->3 and 3->2 antagonism, 1->4 none, 5->6 antagonism (6 not in the package)
RELATION = pairs({(0, 1): SYNERGISM, (2, 3): ANTAGONISM, (3, 2): ANTAGONISM, (1, 4): NONE, (5, 6): ANTAGONISM},
                 np.int8)
COOC = pairs({(0, 1): 0.4, (2, 3): 0.02, (0, 4): 0.3}, np.float32)
DESC = Descriptions.from_table(pa.table({"src": [0, 2], "dst": [1, 3],
                                         "description": ["drug0 may increase the effect of drug1.",
                                                         "drug2 may decrease the effect of drug3."]}), M)
PACKAGE = np.array([0, 1, 2, 3, 4])


def test_labelled_pairs_keep_only_interactions_inside_the_package():
    src, dst, rel = labelled_pairs(PACKAGE, RELATION)
    got = sorted(zip(src.tolist(), dst.tolist(), rel.tolist()))
    assert got == [(0, 1, SYNERGISM), (2, 3, ANTAGONISM), (3, 2, ANTAGONISM)]


def test_descriptions_lookup_and_fallback():
    found = DESC.lookup(np.array([0, 3, 5]), np.array([1, 2, 6]))
    assert found.tolist() == ["drug0 may increase the effect of drug1.", None, None]
    assert Descriptions.empty(M).source == "generated from labels" and DESC.source == "model directory"
    assert "labelled 'antagonism'" in fallback_description("a", "b", "antagonism")


def test_one_warning_per_antagonistic_pair_with_its_description():
    warns = antagonism_warnings(PACKAGE, RELATION, NAMES, DESC)
    assert len(warns) == 1
    w = warns[0]
    assert {w["drug_1"], w["drug_2"]} == {"drug2", "drug3"}
    assert w["description"] in ("drug2 may decrease the effect of drug3.", fallback_description("drug3", "drug2",
                                                                                                "antagonism"))
    assert "Antagonism between" in w["message"]
    assert antagonism_warnings(np.array([0, 1, 4]), RELATION, NAMES, DESC) == []


@pytest.mark.parametrize("variant", ["wg", "ag", "gnn", "wg_type"])
def test_explain_package_fields_per_variant(variant):
    torch.manual_seed(0)
    model = DPR(MODEL, M, 5, NOTE_VOCAB_SIZE, variant).eval()
    u = torch.randn(1, model.encoder.out_dim)
    out = explain_package(model, u, PACKAGE, RELATION, COOC, 0.1, NAMES, DESC)
    assert out["model"] == variant and out["drugs"] == [f"drug{i}" for i in PACKAGE]
    inter = out["interactions"]
    assert [(i["drug_1"], i["drug_2"], i["type"]) for i in inter] == [
        ("drug2", "drug3", "antagonism"), ("drug3", "drug2", "antagonism"), ("drug0", "drug1", "synergism")]
    assert inter[0]["description"] == "drug2 may decrease the effect of drug3."
    assert inter[1]["description"] == fallback_description("drug3", "drug2", "antagonism")
    assert inter[2]["co_occurrence"] == pytest.approx(0.4)
    has_c = model.variant.graph == "wg" and model.variant.context
    has_q = model.variant.type_loss
    for i in inter:
        assert (i["contextual_impact_factor"] is not None) == has_c
        assert (i["type_probabilities"] is not None) == has_q
        if has_c:
            assert -1 < i["contextual_impact_factor"] < 1
        if has_q:
            for key in ("type_probabilities", "type_probabilities_personalized"):
                assert sum(i[key].values()) == pytest.approx(1.0, abs=1e-5)
    assert len(out["warnings"]) == 1


@pytest.mark.parametrize("variant", ["ag", "ag_mask", "wg", "gnn"])
def test_how_to_read_says_how_far_the_type_probabilities_go(variant):
    """A model with a type head (DPR-AG) tells the reader how its head does against R."""
    torch.manual_seed(0)
    model = DPR(MODEL, M, 5, NOTE_VOCAB_SIZE, variant).eval()
    text = how_to_read(model, RELATION)
    assert text.startswith(HOW_TO_READ)
    if model.variant.type_loss:
        assert "checked against the interaction table: on all 5 labelled pairs of R" in text
        assert re.search(r"recall per type: none [01]\.\d\d, synergism [01]\.\d\d, antagonism [01]\.\d\d", text)
    else:
        assert text == HOW_TO_READ
    out = explain_package(model, torch.randn(1, model.encoder.out_dim), PACKAGE, RELATION, COOC, 0.1, NAMES, DESC,
                          text)
    assert out["how_to_read"] == text


@pytest.mark.parametrize("variant", ["wg", "ag"])
def test_batched_explanations_equal_dpr_explain_graph_by_graph(variant):
    """Several packages for several patients in one call give DPR.explain's numbers for each."""
    from dpr_dist.eval.evaluate import candidate_graphs
    from dpr_dist.eval.package_csr import PackageCSR

    torch.manual_seed(1)
    model = DPR(MODEL, M, 5, NOTE_VOCAB_SIZE, variant).eval()
    u = torch.randn(3, model.encoder.out_dim)
    packages = [np.array([0, 1, 4]), np.array([2, 3, 0, 1]), np.array([0, 1])]
    got = explain_packages(model, u, packages, RELATION, COOC, 0.1, NAMES, DESC)
    for i, pkg in enumerate(packages):
        g = candidate_graphs(PackageCSR(np.array([0, pkg.size]), pkg), RELATION, COOC, 0.1)
        ref = model.explain(u[i: i + 1], g)
        src, dst = g.drug[g.edge_index[0]].tolist(), g.drug[g.edge_index[1]].tolist()
        edge = {(f"drug{a}", f"drug{b}"): e for e, (a, b) in enumerate(zip(src, dst))}
        assert got[i]["drugs"] == [f"drug{d}" for d in pkg] and got[i]["interactions"]
        for it in got[i]["interactions"]:
            e = edge[(it["drug_1"], it["drug_2"])]
            if variant == "wg":
                assert it["contextual_impact_factor"] == pytest.approx(float(ref["c"][e]), abs=1e-6)
            else:
                want = ref["type_prob_personal"][e].tolist()
                assert list(it["type_probabilities_personalized"].values()) == pytest.approx(want, abs=1e-6)
                assert list(it["type_probabilities"].values()) == pytest.approx(ref["type_prob"][e].tolist(),
                                                                                abs=1e-6)


def test_single_drug_package_has_nothing_to_explain():
    model = DPR(MODEL, M, 5, NOTE_VOCAB_SIZE, "ag").eval()
    out = explain_package(model, torch.zeros(1, model.encoder.out_dim), np.array([3]), RELATION, COOC, 0.1, NAMES,
                          DESC)
    assert out["interactions"] == [] and out["warnings"] == []


def test_descriptions_round_trip_through_a_model_dir(tmp_path):
    prepared, model_dir = tmp_path / "prep", tmp_path / "model"
    prepared.mkdir(), model_dir.mkdir()
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"src": pa.array([0, 2], pa.int32()), "dst": pa.array([1, 3], pa.int32()),
                             "label": pa.array([1, 2], pa.int8()), "description": ["d01", None]}),
                   prepared / "relation.parquet")
    assert load_descriptions(str(model_dir), M).source == "generated from labels"
    assert write_descriptions(str(model_dir), str(prepared)) == 1
    d = load_descriptions(str(model_dir), M)
    assert d.lookup(np.array([0, 2]), np.array([1, 3])).tolist() == ["d01", None]
    pq.write_table(pa.table({"src": [0], "dst": [1], "label": [1]}), prepared / "relation.parquet")
    with pytest.raises(ValueError, match="no description column"):
        write_descriptions(str(model_dir), str(prepared))
