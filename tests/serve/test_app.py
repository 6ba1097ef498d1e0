"""The Ray Serve application over real HTTP: endpoints, bad input, batching, reload, OpenAPI."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import requests

from dpr_dist.config import load_config
from dpr_dist.serve.deploy import reload_model, run_service, serve_config
from dpr_dist.serve.model import model_version

pytestmark = pytest.mark.slow  # the application on the local Ray cluster, over real HTTP

LIMIT = 20000
SECRET_NOTE = "patient reports SECRETNOTE chest pain"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(ray_session, model_dirs):
    """The application on the session's Ray cluster, on a free port; Serve is shut down after the module."""
    from ray import serve

    cfg = load_config(None, [f"serve.model_dir={model_dirs['ag']}", f"serve.port={_free_port()}", "serve.top_k=3",
                             f"serve.max_request_bytes={LIMIT}", "serve.max_batch_size=8",
                             "serve.batch_wait_timeout_s=0.02"])
    url = run_service(cfg, blocking=False, num_cpus=0.5, name="dpr-test", wait_s=180)
    yield {"url": url, "cfg": cfg}
    serve.shutdown()


@pytest.fixture(scope="module")
def patients(raw_records):
    emr, test = raw_records["emr"], raw_records["test"]
    ids = test["record_id"].to_pylist()[:12]
    rows = emr.filter(pc.is_in(emr["record_id"], value_set=pa.array(ids))).to_pylist()
    out = []
    for r in rows:
        p = {k: v for k, v in r.items() if k not in ("drugs", "admit_time")}
        p["admit_time"] = r["admit_time"].isoformat() if r["admit_time"] is not None else None
        out.append({"patient": p, "drugs": r["drugs"]})
    return out


def post(service, path: str, body, **kw) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(service["url"] + path, data=data, headers={"Content-Type": "application/json",
                                                                   **kw.pop("headers", {})}, timeout=60, **kw)


def test_health_and_model(service, model_dirs):
    h = requests.get(service["url"] + "/v1/health", timeout=30)
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["model"] == "ag"
    assert h.json()["model_version"] == model_version(model_dirs["ag"]) and h.headers["x-request-id"]
    assert h.json()["ingress"] == "haproxy"  # the shipped mode: HAProxy in front, replicas take HTTP directly
    m = requests.get(service["url"] + "/v1/model", timeout=30).json()
    assert m["name"] == "ag" and m["version"] == model_version(model_dirs["ag"])
    assert m["manifest"]["table1"]["records"] > 0 and m["metrics"]["test"] == {"f1": 0.0}
    assert m["descriptions"] == "model directory" and m["top_k"] == 3 and m["training_patients"] > 0


def test_recommend(service, patients):
    r = post(service, "/v1/recommend", {"patient": patients[0]["patient"]}, headers={"X-Request-ID": "req-42"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] == "req-42" == r.headers["x-request-id"]
    assert body["record_id"] == patients[0]["patient"]["record_id"] and body["model"] == "ag"
    assert 1 <= len(body["packages"]) <= 3 and body["packages"][0]["rank"] == 1
    scores = [p["score"] for p in body["packages"]]
    assert scores == sorted(scores, reverse=True)
    expl = body["explanation"]
    assert expl["drugs"] == body["packages"][0]["drugs"]
    for i in expl["interactions"]:
        assert i["type"] in ("synergism", "antagonism") and i["description"]
        assert i["type_probabilities_personalized"] is not None  # DPR-AG
    anta = {frozenset((i["drug_1"], i["drug_2"])) for i in expl["interactions"] if i["type"] == "antagonism"}
    assert {frozenset((w["drug_1"], w["drug_2"])) for w in expl["warnings"]} == anta
    # how far the type probabilities go: DPR-AG's type head checked against the interaction table
    assert "type probabilities, checked against the interaction table: on all" in expl["how_to_read"]
    r = post(service, "/v1/recommend", {"patient": patients[1]["patient"], "top_k": 1})
    assert r.status_code == 200 and len(r.json()["packages"]) == 1


def test_score_takes_drug_names_as_prescribed(service, patients):
    p = patients[0]
    r = post(service, "/v1/score", {"patient": p["patient"], "drugs": p["drugs"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 1 <= body["rank"] <= body["candidates"] + 1 and body["best_candidate"]["rank"] == 1
    assert body["explanation"]["drugs"] == body["drugs"] and len(body["drugs"]) <= len(p["drugs"])
    # proposing the recommended package ranks it first
    rec = post(service, "/v1/recommend", {"patient": p["patient"]}).json()
    again = post(service, "/v1/score", {"patient": p["patient"], "drugs": rec["packages"][0]["drugs"]}).json()
    assert again["rank"] == 1


def test_generate(service, patients):
    r = post(service, "/v1/generate", {"patient": patients[2]["patient"], "top_k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 1 <= len(body["packages"]) <= 5 and body["candidates"] >= len(body["packages"])
    assert all(p["origin"] in ("candidate", "s2", "s3") for p in body["packages"])
    assert body["explanation"]["drugs"] == body["packages"][0]["drugs"]


def _bad_cases(p: dict) -> list[tuple[str, str, object, int, str]]:
    pat = p["patient"]
    no_gender = {k: v for k, v in pat.items() if k != "gender"}
    return [
        ("missing field", "/v1/recommend", {"patient": no_gender}, 422, "patient.gender"),
        ("age too high", "/v1/recommend", {"patient": {**pat, "age": 130}}, 422, "patient.age"),
        ("age negative", "/v1/generate", {"patient": {**pat, "age": -1}}, 422, "patient.age"),
        ("age not a number", "/v1/recommend", {"patient": {**pat, "age": "old"}}, 422, "patient.age"),
        ("unknown field", "/v1/recommend", {"patient": {**pat, "weight": 80}}, 422, "patient.weight"),
        ("bad lab range", "/v1/recommend",
         {"patient": {**pat, "labs": [{"name": "K", "value": 4.1, "ref_low": 5, "ref_high": 3}]}}, 422,
         "patient.labs[0]"),
        ("bad lab flag", "/v1/recommend", {"patient": {**pat, "labs": [{"name": "K", "flag": "weird"}]}}, 422,
         "patient.labs[0].flag"),
        ("unknown drug", "/v1/score", {"patient": pat, "drugs": [p["drugs"][0], "Unobtainium 5 mg"]}, 422,
         "drugs[1]"),
        ("empty package", "/v1/score", {"patient": pat, "drugs": []}, 422, "drugs"),
        ("missing patient", "/v1/score", {"drugs": p["drugs"]}, 422, "patient"),
        ("top_k out of range", "/v1/recommend", {"patient": pat, "top_k": 0}, 422, "top_k"),
        ("malformed JSON", "/v1/recommend", '{"patient": {"record_id": "x",', 400, ""),
        ("not an object", "/v1/recommend", "[1, 2]", 422, "body"),
        ("body not UTF-8", "/v1/recommend", b'{"patient": "\xff\xfe"}', 400, ""),
        ("oversized payload", "/v1/recommend", {"patient": {**pat, "note": "x" * (LIMIT + 10)}}, 413, ""),
    ]


@pytest.mark.parametrize("case", range(15))
def test_bad_input_gets_a_4xx_naming_the_field(service, patients, case):
    name, path, body, status, field = _bad_cases(patients[0])[case]
    r = post(service, path, body)
    assert r.status_code == status, (name, r.status_code, r.text)
    err = r.json()
    assert err["request_id"] == r.headers["x-request-id"] and err["message"]
    if field:
        assert field in [f["field"] for f in err["fields"]], (name, err)


def test_errors_never_echo_notes_or_lab_values(service, patients):
    pat = {**patients[0]["patient"], "note": SECRET_NOTE, "age": 999,
           "labs": [{"name": "Potassium", "value": 123.456, "ref_low": 9, "ref_high": 1}]}
    r = post(service, "/v1/recommend", {"patient": pat})
    assert r.status_code == 422
    assert "SECRETNOTE" not in r.text and "123.456" not in r.text
    assert {f["field"] for f in r.json()["fields"]} >= {"patient.age", "patient.labs[0]"}


def test_chunked_oversized_body_is_refused(service, patients):
    big = json.dumps({"patient": {**patients[0]["patient"], "note": "y" * (2 * LIMIT)}}).encode()
    chunks = (big[i: i + 4096] for i in range(0, len(big), 4096))  # no Content-Length: chunked transfer
    r = requests.post(service["url"] + "/v1/recommend", data=chunks, headers={"Content-Type": "application/json"},
                      timeout=60)
    assert r.status_code == 413


def test_concurrent_requests_are_batched_without_mixing_answers(service, patients):
    alone = [post(service, "/v1/recommend", {"patient": p["patient"]}).json() for p in patients[:6]]
    jobs = [p["patient"] for p in patients[:6]] * 3
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        got = list(pool.map(lambda p: post(service, "/v1/recommend", {"patient": p}), jobs))
    assert all(r.status_code == 200 for r in got)
    for i, r in enumerate(got):
        ref = alone[i % 6]
        body = r.json()
        assert body["record_id"] == ref["record_id"]
        assert [p["drugs"] for p in body["packages"]] == [p["drugs"] for p in ref["packages"]]
        assert body["packages"][0]["score"] == pytest.approx(ref["packages"][0]["score"], rel=1e-4, abs=1e-5)


def test_openapi_document_matches_the_responses(service):
    """Schemathesis: generated valid and invalid requests, every response checked against the document."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance, negative_data_rejection, response_schema_conformance, status_code_conformance)

    schema = schemathesis.openapi.from_url(service["url"] + "/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    assert {op.path for op in ops} == {"/v1/recommend", "/v1/score", "/v1/generate", "/v1/health", "/v1/model"}
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    for op in ops:
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if op.method.upper() == "POST" else [])
        for mode in modes:
            extra = [negative_data_rejection] if mode == GenerationMode.NEGATIVE else []

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=6, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def check(case):
                case.call_and_validate(base_url=service["url"], checks=checks + extra)

            check()


def test_reload_through_user_config_without_restart(service, model_dirs, patients):
    url, cfg = service["url"], service["cfg"]
    before = requests.get(url + "/v1/health", timeout=30).json()
    reload_model(cfg, model_dirs["wg"], name="dpr-test", num_cpus=0.5, wait_s=120)
    want = model_version(model_dirs["wg"])
    deadline = time.time() + 60
    while requests.get(url + "/v1/model", timeout=30).json()["version"] != want:
        assert time.time() < deadline, "the model was not reloaded"
        time.sleep(0.5)
    after = requests.get(url + "/v1/health", timeout=30).json()
    assert after["model"] == "wg" and after["replica"] == before["replica"]  # same replica: no restart
    body = post(service, "/v1/recommend", {"patient": patients[0]["patient"]}).json()
    assert body["model"] == "wg" and body["model_version"] == want
    assert all(i["contextual_impact_factor"] is not None for i in body["explanation"]["interactions"])
    # an option change applies without loading the model again
    loaded = requests.get(url + "/v1/model", timeout=30).json()["loaded_at"]
    options = ["serve.top_k=1", "serve.rank_by=expected_f1", "serve.temperature=20"]
    reload_model(cfg.with_overrides(options), model_dirs["wg"], name="dpr-test", num_cpus=0.5, wait_s=120)
    deadline = time.time() + 60
    while (m := requests.get(url + "/v1/model", timeout=30).json())["top_k"] != 1:
        assert time.time() < deadline, "top_k was not applied"
        time.sleep(0.5)
    assert m["loaded_at"] == loaded and m["version"] == want
    assert (m["rank_by"], m["temperature"]) == ("expected_f1", 20.0)
    (package,) = post(service, "/v1/recommend", {"patient": patients[0]["patient"]}).json()["packages"]
    assert 0 <= package["expected_f1"] <= 1 and package["rank"] == 1
    # a bad model directory keeps the current model and says why
    reload_model(cfg, model_dirs["wg"] + "-missing", name="dpr-test", num_cpus=0.5, wait_s=120)
    deadline = time.time() + 60
    while not (h := requests.get(url + "/v1/health", timeout=30).json()).get("reload_error"):
        assert time.time() < deadline, "the failed reload was not reported"
        time.sleep(0.5)
    assert h["model_version"] == want and "bundle.json" in h["reload_error"] and h["replica"] == before["replica"]


def test_serve_config_is_a_valid_declarative_config(service):
    from ray.serve.schema import ServeDeploySchema

    conf = serve_config(service["cfg"], model_dir="s3://bucket/models/ag")
    schema = ServeDeploySchema.model_validate(conf)
    app = schema.applications[0]
    assert app.import_path == "dpr_dist.serve.app:build_app"
    assert app.deployments[0].user_config["model_dir"] == "s3://bucket/models/ag"


def test_build_app_arguments(tmp_path):
    import runpy

    from dpr_dist.serve.app import _config_from_args, build_app

    (tmp_path / "c.yaml").write_text("serve:\n  top_k: 9\n  port: 9000\n")
    cfg, extra = _config_from_args({"config": str(tmp_path / "c.yaml"), "model_dir": "s3://b/m", "max_batch_size": "4",
                                    "num_cpus": "0.5"})
    assert (cfg.serve.model_dir, cfg.serve.top_k, cfg.serve.max_batch_size, cfg.serve.port) == ("s3://b/m", 9, 4, 9000)
    assert extra == {"num_cpus": "0.5"}
    with pytest.raises(ValueError, match="unknown argument"):
        build_app({"model_dir": "m", "modle_dir": "typo"})
    app = build_app({"model_dir": "s3://b/m", "num_replicas": "2", "num_cpus": "0.5"})
    d = app._bound_deployment
    assert d.num_replicas == 2 and d.user_config["model_dir"] == "s3://b/m"
    assert (d.user_config["rank_by"], d.user_config["temperature"]) == ("score", 1.0)
    app = build_app({"model_dir": "s3://b/m", "rank_by": "expected_f1", "temperature": "0.5"})
    assert (app._bound_deployment.user_config["rank_by"], app._bound_deployment.user_config["temperature"]) == \
        ("expected_f1", 0.5)
    with pytest.raises(ValueError, match="serve.rank_by='f1' must be one of"):
        build_app({"model_dir": "s3://b/m", "rank_by": "f1"})
    assert d.ray_actor_options["num_cpus"] == 0.5
    parse = runpy.run_path(str(Path(__file__).resolve().parents[2] / "jobs" / "serve.py"), run_name="jobs.serve")["parse"]
    args = parse(["--model-dir", "m", "--set", "serve.port=8080", "--num-cpus", "2"])
    assert (args.model_dir, args.overrides, args.num_cpus, args.reload) == ("m", ["serve.port=8080"], 2.0, None)
