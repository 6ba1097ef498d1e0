"""The FastAPI app without Ray (the baseline of benchmarks/serve.py), served by uvicorn on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import requests


pytestmark = pytest.mark.slow  # uvicorn on loopback, real HTTP


@pytest.fixture(scope="module")
def plain(model_dirs):
    import uvicorn

    from dpr_dist.serve.app import plain_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = plain_app({"model_dir": model_dirs["gnn"], "top_k": 2, "max_request_bytes": 5000})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def patient(raw_records):
    emr, test = raw_records["emr"], raw_records["test"]
    row = emr.filter(pc.is_in(emr["record_id"], value_set=pa.array(test["record_id"].to_pylist()[:1]))).to_pylist()[0]
    return {k: v for k, v in row.items() if k not in ("drugs", "admit_time")}


def test_plain_server_answers_like_the_service(plain, patient, model_dirs):
    from dpr_dist.serve.service import DPRService

    r = requests.post(plain + "/v1/recommend", json={"patient": patient}, headers={"X-Request-ID": "abc"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "abc" == r.json()["request_id"]
    body = r.json()
    svc = DPRService.load(model_dirs["gnn"], top_k=2)
    ref = svc.recommend(svc.prepare_patients([patient]))[0]
    assert [p["drugs"] for p in body["packages"]] == [p["drugs"] for p in ref["packages"]]
    # the gnn variant has no edge attributes: pairs and warnings, but no factors
    assert all(i["contextual_impact_factor"] is None and i["type_probabilities"] is None
               for i in body["explanation"]["interactions"])
    assert requests.get(plain + "/v1/model", timeout=30).json()["name"] == "gnn"


def test_plain_server_validates_the_same_way(plain, patient):
    r = requests.post(plain + "/v1/recommend", json={"patient": {**patient, "age": 121}}, timeout=30)
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "patient.age"
    assert r.headers["x-request-id"] == r.json()["request_id"]
    r = requests.post(plain + "/v1/recommend", data=json.dumps({"patient": {**patient, "note": "z" * 6000}}),
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    r = requests.post(plain + "/v1/nowhere", json={}, timeout=30)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_logs_carry_request_ids_and_timings_but_no_clinical_text(plain, patient, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="ray.serve.dpr")
    secret = {**patient, "note": "NOTE-SECRET-TEXT", "labs": [{"name": "Potassium", "value": 6.789, "ref_low": 3.5,
                                                               "ref_high": 5.1}]}
    ok = requests.post(plain + "/v1/recommend", json={"patient": secret}, headers={"X-Request-ID": "log-1"},
                       timeout=30)
    bad = requests.post(plain + "/v1/recommend", json={"patient": {**secret, "age": 300}},
                        headers={"X-Request-ID": "log-2"}, timeout=30)
    assert ok.status_code == 200 and bad.status_code == 422
    deadline = time.time() + 10  # the access line is written once the response has gone out
    while "request_id=log-2 POST" not in (text := "\n".join(r.getMessage() for r in caplog.records)):
        assert time.time() < deadline, text
        time.sleep(0.05)
    assert "request_id=log-1" in text and "request_id=log-2" in text and " ms" in text
    assert f"record_id={patient['record_id']}" in text
    assert "NOTE-SECRET-TEXT" not in text and "6.789" not in text
