"""DPRService without Ray Serve: the same inputs and choices as preparation and evaluation."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dpr_dist.eval.evaluate import evaluate, evaluate_models
from dpr_dist.serve.inputs import InputError
from dpr_dist.serve.model import model_version
from dpr_dist.serve.service import DPRService
from dpr_dist.train.modeldir import load_model_dir


@pytest.fixture(scope="module")
def svc(model_dirs) -> DPRService:
    return DPRService.load(model_dirs["ag"], top_k=3)


def patients_of(emr: pa.Table, ids: list[str]) -> list[dict]:
    rows = emr.filter(pc.is_in(emr["record_id"], value_set=pa.array(ids))).to_pylist()
    by_id = {r["record_id"]: r for r in rows}
    return [{k: v for k, v in by_id[i].items() if k != "drugs"} for i in ids]


def test_prepare_encodes_patients_exactly_as_dpr_prepare(svc, raw_records):
    test = raw_records["test"].slice(0, 25)
    ids = test["record_id"].to_pylist()
    prepared = svc.prepare_patients(patients_of(raw_records["emr"], ids))
    assert prepared["record_id"].to_pylist() == ids
    for mine, theirs in zip(prepared["doc_ids"].to_pylist(), test["doc_ids"].to_pylist()):
        assert sorted(mine) == sorted(theirs)
    assert prepared["note"].to_pylist() == test["note"].to_pylist()


def test_recommend_picks_what_the_evaluator_picks(svc, raw_records, model_dirs):
    test = raw_records["test"].slice(0, 30)
    ids = test["record_id"].to_pylist()
    _, pred = evaluate(load_model_dir(model_dirs["ag"]), test)
    prepared = svc.prepare_patients(patients_of(raw_records["emr"], ids))
    answers = svc.recommend(prepared, top_k=3)
    packages, scores = svc.pick(prepared)
    for a, p, best, want in zip(answers, packages, scores, pred["drugs"].to_pylist()):
        assert a["packages"][0]["drugs"] == want == [svc.names[i] for i in p]
        assert a["packages"][0]["score"] == pytest.approx(best, rel=1e-5)
        got = [x["score"] for x in a["packages"]]
        assert got == sorted(got, reverse=True) and 1 <= len(got) <= 3 and len(got) <= a["candidates"]
        assert [x["rank"] for x in a["packages"]] == list(range(1, len(got) + 1))
        assert a["explanation"]["drugs"] == a["packages"][0]["drugs"]


def test_ranking_by_expected_f1_picks_what_evaluate_mbr_picks(svc, raw_records, model_dirs):
    test = raw_records["test"].slice(0, 30)
    ids = test["record_id"].to_pylist()
    # the untrained model's scores spread over tens: T = 20 keeps the softmax from being one-hot
    metrics, pred = evaluate_models(load_model_dir(model_dirs["ag"]), test, ["ag"], mbr_temperature=20.0)
    want = pred.filter(pc.equal(pred["model"], "ag+mbr"))["drugs"].to_pylist()
    mbr = svc.with_options(rank_by="expected_f1", temperature=20.0)
    assert (svc.rank_by, mbr.rank_by, mbr.temperature, mbr.info()["rank_by"]) == ("score", "expected_f1", 20.0,
                                                                                   "expected_f1")
    prepared = mbr.prepare_patients(patients_of(raw_records["emr"], ids))
    answers = mbr.recommend(prepared, top_k=10, explain=False)
    packages, scores = mbr.pick(prepared)
    by_score = svc.recommend(prepared, top_k=10, explain=False)
    assert sum(a["packages"][0]["drugs"] != b["packages"][0]["drugs"] for a, b in zip(answers, by_score)) > 0
    for a, b, p, best, w in zip(answers, by_score, packages, scores, want):
        assert a["packages"][0]["drugs"] == w == [svc.names[i] for i in p]
        assert a["packages"][0]["score"] == pytest.approx(best, rel=1e-5)  # the model's score of the pick
        e = [x["expected_f1"] for x in a["packages"]]
        assert e == sorted(e, reverse=True) and all(0 <= x <= 1 for x in e)
        assert {tuple(x["drugs"]) for x in a["packages"]} == {tuple(x["drugs"]) for x in b["packages"]}
        assert all(x["expected_f1"] is None for x in b["packages"])
    best_of = mbr.score(prepared, [mbr.resolve_drugs(a["packages"][0]["drugs"]) for a in answers])
    assert [s["best_candidate"]["drugs"] for s in best_of] == [a["packages"][0]["drugs"] for a in answers]
    gen = mbr.generate(prepared, top_k=50)
    for g in gen:
        e = [x["expected_f1"] for x in g["packages"]]
        assert e == sorted(e, reverse=True) and all(0 <= x <= 1 for x in e)
    with pytest.raises(ValueError, match="serve.rank_by='f1' must be one of"):
        svc.with_options(rank_by="f1")
    for bad in (0.0, float("inf")):
        with pytest.raises(ValueError, match=f"serve.temperature={bad} must be a finite number > 0"):
            svc.with_options(rank_by="expected_f1", temperature=bad)


def test_score_ranks_a_proposal_against_the_candidates(svc, raw_records):
    ids = raw_records["test"]["record_id"].to_pylist()[:4]
    prepared = svc.prepare_patients(patients_of(raw_records["emr"], ids))
    rec = svc.recommend(prepared, top_k=10, explain=False)
    # proposing the best candidate ranks first; proposing the worst ranks last
    best = [svc.resolve_drugs(r["packages"][0]["drugs"]) for r in rec]
    worst = [svc.resolve_drugs(r["packages"][-1]["drugs"]) for r in rec]
    for r, s in zip(rec, svc.score(prepared, best)):
        assert s["rank"] == 1 and s["score"] == pytest.approx(r["packages"][0]["score"], rel=1e-4, abs=1e-5)
        assert s["best_candidate"]["drugs"] == r["packages"][0]["drugs"]
    for r, s in zip(rec, svc.score(prepared, worst)):
        assert s["rank"] == len(r["packages"]) == s["candidates"]


def test_handle_answers_good_requests_and_names_the_bad_ones(svc, raw_records):
    ids = raw_records["test"]["record_id"].to_pylist()[:3]
    pats = patients_of(raw_records["emr"], ids)
    bad_age = {**pats[1], "age": 150.0}
    bad_lab = {**pats[2], "labs": [{"name": "K", "value": 4.0, "ref_low": 5.0, "ref_high": 3.0, "flag": None}]}
    out = svc.handle("recommend", [{"patient": pats[0]}, {"patient": bad_age}, {"patient": bad_lab}])
    assert out[0]["record_id"] == ids[0] and len(out[0]["packages"]) == 3
    assert isinstance(out[1], InputError) and out[1].field == "patient.age" and "range" in out[1].message
    assert isinstance(out[2], InputError) and out[2].field == "patient.labs"
    assert "4.0" not in str(out[2]) and "5.0" not in str(out[2])  # no lab values in messages
    drugs = list(svc.names[:2])
    out = svc.handle("score", [{"patient": pats[0], "drugs": ["nope"]}, {"patient": pats[1], "drugs": drugs}])
    assert isinstance(out[0], InputError) and out[0].field == "drugs[0]"
    assert out[1]["drugs"] == drugs and out[1]["rank"] >= 1


def test_generate_extends_the_candidates(model_dirs, raw_records):
    from dpr_dist.eval.generation import GenerationConfig

    svc = DPRService.load(model_dirs["ag"], top_k=50)
    loose = svc.with_options(generation=GenerationConfig(low_rank_l=10, top_l=8, unpopular_rank_L=5, high_cooc=0.3,
                                                         low_cooc=0.01, rare_support=0.4))
    ids = raw_records["test"]["record_id"].to_pylist()[:5]
    prepared = svc.prepare_patients(patients_of(raw_records["emr"], ids))
    out = loose.generate(prepared)
    origins = {p["origin"] for a in out for p in a["packages"]}
    assert "candidate" in origins and origins & {"s2", "s3"}
    base = svc.recommend(prepared, top_k=50, explain=False)
    for a, b in zip(out, base):
        assert a["candidates"] >= b["candidates"]
        generated = [p for p in a["packages"] if p["origin"] != "candidate"]
        assert all(p["rules"] for p in generated)
        assert all(r["drug"] in svc.drugs for p in generated for r in p["rules"])
        assert a["packages"][0]["score"] >= b["packages"][0]["score"] - 1e-5  # S contains S1


def test_model_info_and_version(svc, model_dirs):
    info = svc.info()
    assert info["name"] == "ag" and info["version"] == model_version(model_dirs["ag"]) and len(info["version"]) == 12
    assert info["descriptions"] == "model directory" and info["training_patients"] > 0
    assert "table1" in info["manifest"] and info["metrics"]["test"] == {"f1": 0.0}
    assert model_version(model_dirs["ag"]) != model_version(model_dirs["wg"])


def test_ncf_only_directory_is_refused(model_dirs):
    b = load_model_dir(model_dirs["ag"])
    b.model = None
    with pytest.raises(ValueError, match="holds only NCF"):
        DPRService(b)


def test_model_directory_on_s3(s3_server, model_dirs, raw_records):
    import pyarrow.fs as pafs

    from dpr_dist.data import io

    fs, _ = io.filesystem("s3://dpr/models/ag")
    pafs.copy_files(model_dirs["ag"], "dpr/models/ag", source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)
    remote, local = DPRService.load("s3://dpr/models/ag"), DPRService.load(model_dirs["ag"])
    assert remote.version == local.version and remote.descriptions.source == "model directory"
    ids = raw_records["test"]["record_id"].to_pylist()[:3]
    pats = patients_of(raw_records["emr"], ids)
    a = remote.recommend(remote.prepare_patients(pats), explain=False)
    b = local.recommend(local.prepare_patients(pats), explain=False)
    assert [x["packages"] for x in a] == [x["packages"] for x in b]


def test_a_package_baseline_is_served_without_edge_factors(model_dirs, raw_records):
    svc = DPRService.load(model_dirs["dam"], top_k=2)
    assert svc.info()["name"] == "dam" and svc.descriptions.source == "generated from labels"
    ids = raw_records["test"]["record_id"].to_pylist()[:4]
    out = svc.handle("recommend", [{"patient": p} for p in patients_of(raw_records["emr"], ids)])
    _, pred = evaluate(load_model_dir(model_dirs["dam"]), raw_records["test"].slice(0, 4))
    assert [o["packages"][0]["drugs"] for o in out] == pred["drugs"].to_pylist()
    inter = [i for o in out for i in o["explanation"]["interactions"]]
    assert inter and all(i["contextual_impact_factor"] is None and i["type_probabilities"] is None for i in inter)
    assert all("no description in the model directory" in i["description"] for i in inter)
    assert out[0]["explanation"]["model"] == "dam"


@pytest.mark.parametrize("variant", ["nn", "package2vec", "lda", "br"])
def test_every_package_baseline_recommends_scores_and_generates(variant, tiny_prepared, raw_records, tmp_path):
    from modeldirs import build_model_dir

    model_dir = build_model_dir(str(tiny_prepared["dir"]), str(tmp_path / variant), variant, seed=7)
    svc = DPRService.load(model_dir, top_k=3)
    test = raw_records["test"].slice(0, 5)
    pats = patients_of(raw_records["emr"], test["record_id"].to_pylist())
    rec = svc.handle("recommend", [{"patient": p} for p in pats])
    _, pred = evaluate(load_model_dir(model_dir), test)
    assert [r["packages"][0]["drugs"] for r in rec] == pred["drugs"].to_pylist()
    assert all(r["explanation"]["model"] == variant for r in rec)
    assert all(i["contextual_impact_factor"] is None and i["type_probabilities"] is None
               for r in rec for i in r["explanation"]["interactions"])
    scored = svc.handle("score", [{"patient": p, "drugs": r["packages"][0]["drugs"]} for p, r in zip(pats, rec)])
    assert all(s["rank"] == 1 and s["explanation"]["drugs"] == s["drugs"] for s in scored)
    gen = svc.handle("generate", [{"patient": p} for p in pats[:2]])
    assert all(g["packages"] and np.isfinite([x["score"] for x in g["packages"]]).all() for g in gen)
