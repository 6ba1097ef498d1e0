"""The clinician review page (``/ui``): its routes over real HTTP, its bundled files, and the page in a
real headless Chromium against the Ray Serve application.

The browser test needs Debian's ``chromium`` and ``chromium-driver`` (``make browser``; ``make test`` runs it).
Screenshots go to the test's ``tmp_path``; with ``DPR_UI_SCREENSHOTS=<dir>`` they are also
copied there (``DPR_UI_SCREENSHOTS=docs/img`` regenerates the pictures of ``docs/ui.md``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import requests

from dpr_dist.config import load_config
from dpr_dist.data.documents import lab_levels
from dpr_dist.serve.app import PlainBackend
from dpr_dist.serve.deploy import run_service
from dpr_dist.serve.http import create_app
from dpr_dist.serve.ui import EXAMPLES_FILE, UI_DIR, mount_ui, write_examples

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
NOTE_MARK = "UINOTEMARK"  # must reach the model, never a log or the browser's storage
ABNORMAL = ("high", "low", "abnormal")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- the routes and files
@pytest.fixture(scope="module")
def plain_ui(model_dirs):
    """The page's routes on the plain (no Ray) app of the DPR-AG model, served by uvicorn on loopback."""
    import uvicorn

    backend = PlainBackend({"model_dir": model_dirs["ag"], "top_k": 3})
    app = mount_ui(create_app(backend, 65536), backend)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.1)
    yield {"url": f"http://127.0.0.1:{server.config.port}", "backend": backend}
    server.should_exit = True
    thread.join(timeout=30)


def test_bundled_examples_are_the_synthetic_generator_output(tmp_path):
    assert json.loads(write_examples(tmp_path / "examples.json").read_text()) == json.loads(EXAMPLES_FILE.read_text())
    examples = json.loads(EXAMPLES_FILE.read_text())["examples"]
    assert len(examples) == 6 and all(e["patient"]["record_id"].startswith("example-") for e in examples)
    assert {e["patient"]["gender"] for e in examples} >= {"F", "M"}


def test_page_refers_only_to_its_own_files():
    page = (UI_DIR / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(not re.match(r"^(?:[a-z]+:)?//", r) for r in refs), refs
    for ref in refs:
        if ref.startswith("static/"):
            assert (UI_DIR / ref.removeprefix("static/")).is_file(), ref
    code = (UI_DIR / "app.js").read_text() + (UI_DIR / "app.css").read_text()
    assert not re.search(r"https?://|localStorage|sessionStorage|document\.cookie|indexedDB|console\.", code)
    assert (UI_DIR / "vendor" / "LICENSE.d3").read_text().startswith("Copyright 2010-")


def test_ui_routes(plain_ui, model_dirs):
    url, svc = plain_ui["url"], plain_ui["backend"].service
    page = requests.get(url + "/ui", timeout=30)  # redirected to /ui/
    assert page.status_code == 200 and page.url.endswith("/ui/") and "<title>DPR" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for path in ("app.js", "app.css", "vendor/d3.v7.9.2.min.js", "examples.json"):
        r = requests.get(f"{url}/ui/static/{path}", timeout=30)
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store", path
    assert not [p for p in requests.get(url + "/openapi.json", timeout=30).json()["paths"] if p.startswith("/ui")]

    vocab = requests.get(url + "/ui/vocabulary", timeout=30).json()
    assert sorted(vocab["drugs"]) == sorted(map(str, svc.names)) and vocab["model"] == "ag"
    tokens = set(svc.doc_vocab.to_pylist())
    for lab in vocab["labs"]:  # the form's name + level give back the model's token
        assert lab["levels"] and all(f"lab:{lab['name'].replace(' ', '_')}:{lv}" in tokens for lv in lab["levels"])
    assert {f"gender:{g}" for g in vocab["genders"]} <= tokens

    name = vocab["drugs"][0]
    read = requests.post(url + "/ui/resolve", json={"drugs": [f"{name} 20 mg tablet", "Notadrugumab", "5 mg"]},
                         timeout=30).json()["drugs"]
    assert read[0] == {"input": f"{name} 20 mg tablet", "drug": name, "message": None}
    assert read[1]["drug"] is None and "unknown drug" in read[1]["message"]
    assert read[2]["drug"] is None and "not a drug name" in read[2]["message"]
    bad = requests.post(url + "/ui/resolve", json={"drugs": []}, timeout=30)
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "drugs"


def test_graph_route_holds_every_labelled_pair_of_the_explanation(plain_ui, raw_records):
    url, svc = plain_ui["url"], plain_ui["backend"].service
    for row in raw_records["test"].slice(0, 5).to_pylist():
        names = [str(svc.names[i]) for i in row["drug_ids"]]
        edges = requests.post(url + "/ui/graph", json={"drugs": names}, timeout=30).json()["edges"]
        assert all(e["drug_1"] in names and e["drug_2"] in names for e in edges)
        prepared = svc.prepare_patients([{"record_id": "r", "patient_id": "p", "gender": "F", "age": 50}])
        expl = svc.explain(svc.rank(prepared).u, [svc.resolve_drugs(names)])[0]
        labelled = {(e["drug_1"], e["drug_2"], e["type"]) for e in edges if e["type"] in ("synergism", "antagonism")}
        assert labelled == {(i["drug_1"], i["drug_2"], i["type"]) for i in expl["interactions"]}


def test_ui_routes_without_a_model_answer_503(plain_ui):
    backend = plain_ui["backend"]
    service, backend.service = backend.service, None
    try:
        r = requests.get(plain_ui["url"] + "/ui/vocabulary", timeout=30)
        assert r.status_code == 503 and r.json()["error"] == "unavailable"
    finally:
        backend.service = service


# ----------------------------------------------------------------------------- the page in a browser
@pytest.fixture(scope="module")
def ui_service(ray_session, model_dirs):
    """The application (DPR-AG) on the session's Ray cluster; Serve is shut down after the module."""
    from ray import serve

    cfg = load_config(None, [f"serve.model_dir={model_dirs['ag']}", f"serve.port={_free_port()}", "serve.top_k=5"])
    url = run_service(cfg, blocking=False, num_cpus=0.5, name="dpr-ui-test", wait_s=180)
    yield url
    serve.shutdown()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through chromedriver (the system packages, no download)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: run `make browser` (Debian packages chromium, "
                    "chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1400", "--force-device-scale-factor=1", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def form_patient(raw_records, ui_service):
    """Among the first test patients (raw EMR rows), the one whose recommended package has the most
    labelled interactions, then the most abnormal labs (a telling picture for docs/ui.md)."""
    emr, test = raw_records["emr"], raw_records["test"]
    ids = test["record_id"].to_pylist()[:8]
    rows = emr.filter(pc.is_in(emr["record_id"], value_set=pa.array(ids))).to_pylist()
    rows.sort(key=lambda r: ids.index(r["record_id"]))
    levels = [lab_levels(pa.array([r["labs"]], emr.schema.field("labs").type))[0].to_pylist()[0] for r in rows]
    patients = [{k: v for k, v in r.items() if k not in ("drugs", "admit_time")} for r in rows]
    labelled = [len(requests.post(ui_service + "/v1/recommend", json={"patient": p}, timeout=60)
                    .json()["explanation"]["interactions"]) for p in patients]
    i = max(range(len(rows)), key=lambda j: (labelled[j], sum(lv in ABNORMAL for lv in levels[j]), -j))
    abnormal = {lab["name"]: lv for lab, lv in zip(rows[i]["labs"], levels[i]) if lv in ABNORMAL}
    patient = {**patients[i], "note": f"{rows[i]['note'] or ''} {NOTE_MARK}".strip()}
    return {"patient": patient, "abnormal": abnormal}


def _wait(driver, test, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: test(d))


def _texts(driver, selector: str) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)",
                                 selector)


def _shot(driver, element, path: Path) -> Path:
    """A PNG of ``element`` in full, also below the fold (Chrome DevTools capture)."""
    rect = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height};", element)
    data = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                            "clip": {**rect, "scale": 1}})
    path.write_bytes(base64.b64decode(data["data"]))
    if os.environ.get("DPR_UI_SCREENSHOTS"):
        out = Path(os.environ["DPR_UI_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / path.name)
    return path


def _fill(driver, form_patient) -> None:
    """Type the patient into the form with the keyboard."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    p = form_patient["patient"]
    for field in ("record_id", "patient_id", "age", "insurance", "note"):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(str(p[field]) if p[field] is not None else "")
    Select(driver.find_element(By.ID, "gender")).select_by_value(p["gender"].lower())
    Select(driver.find_element(By.ID, "surgery")).select_by_value({True: "yes", False: "no", None: ""}[p["surgery"]])
    picked = 0
    for name, level in form_patient["abnormal"].items():
        found = driver.find_elements(By.CSS_SELECTOR, f'#lab-grid select[data-lab="{name.lower()}"]')
        options = [o.get_attribute("value") for o in found[0].find_elements(By.TAG_NAME, "option")] if found else []
        if level in options:  # levels outside the model's vocabulary are dropped by the model too
            Select(found[0]).select_by_value(level)
            picked += 1
    assert picked, "the chosen patient has no abnormal lab in the model's vocabulary"


@pytest.mark.slow  # Ray Serve + a browser
def test_review_page(ui_service, browser, form_patient, tiny_data, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    page = requests.get(ui_service + "/ui", timeout=30)
    assert page.status_code == 200 and "Drug package review" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    d.get(ui_service + "/ui")
    _wait(d, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    assert "Model ag" in d.find_element(By.ID, "model-line").text
    assert len(d.find_elements(By.CSS_SELECTOR, "#example option")) > 1  # the bundled synthetic examples

    # ---- recommendation, the form driven by the keyboard
    _fill(d, form_patient)
    d.find_element(By.ID, "recommend").send_keys(Keys.ENTER)
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#rec-graph svg g.node"))
    expected = requests.post(ui_service + "/v1/recommend", json={"patient": form_patient["patient"], "top_k": 5},
                             timeout=60).json()
    drugs = expected["packages"][0]["drugs"]
    shown = _texts(d, "#rec-graph svg g.node text")
    assert sorted(shown) == sorted(drugs), "the graph must show the recommended package's drugs"
    links = d.find_elements(By.CSS_SELECTOR, "#rec-graph svg path.link")
    labelled = [i for i in expected["explanation"]["interactions"]]
    assert len(links) >= len(labelled)
    for it in labelled:  # each labelled pair is listed with its type and a width from the model's factor
        assert d.find_elements(By.XPATH, f'//div[@id="rec-package"]//tr[td[1]="{it["drug_1"]}" and '
                                         f'td[2]="{it["drug_2"]}" and td[3]="{it["type"]}"]')
    rows = d.find_elements(By.CSS_SELECTOR, "#rec-candidates tbody tr")
    assert len(rows) == len(expected["packages"])
    assert rows[0].find_elements(By.TAG_NAME, "td")[1].text == ", ".join(drugs)
    _shot(d, d.find_element(By.ID, "recommendation"), tmp_path / "ui-recommendation.png")

    # ---- the package-generation result, then its last package explained through "Show #k"
    d.find_element(By.ID, "generate").send_keys(Keys.ENTER)
    _wait(d, lambda d: d.find_element(By.ID, "rec-status").text.startswith("Done")
          and d.find_element(By.ID, "rec-title").text.startswith("Best generated package"))
    generated = d.execute_script("return [...document.querySelectorAll('#rec-candidates tbody tr')]"
                                 ".map(r => [...r.cells].map(c => c.textContent))")
    assert generated and all(re.match(r"(candidate|s2|s3)\b", row[3]) for row in generated), generated
    want = sorted(generated[-1][1].split(", "))
    d.find_elements(By.CSS_SELECTOR, "#rec-candidates button.show")[-1].send_keys(Keys.ENTER)
    _wait(d, lambda d: d.find_element(By.ID, "rec-status").text == f"Showing package #{len(generated)}."
          and sorted(_texts(d, "#rec-graph svg g.node text")) == want)

    # ---- check my prescription: an antagonistic pair (one name as prescribed) and an unknown name
    vocab = set(requests.get(ui_service + "/ui/vocabulary", timeout=30).json()["drugs"])
    ddi = tiny_data["ddi_table"].to_pylist()
    a, b = next((r["drug_a"], r["drug_b"]) for r in ddi
                if r["label"] == "antagonism" and r["drug_a"] in vocab and r["drug_b"] in vocab)
    rx = d.find_element(By.ID, "rx-drugs")
    rx.clear()
    rx.send_keys(f"{a} 10 mg tablet", Keys.ENTER, b, Keys.ENTER, "Notadrugumab 5 mg", Keys.TAB)
    active = d.switch_to.active_element
    assert active.get_attribute("id") == "rx-check", "Tab from the prescription must reach its button"
    active.send_keys(Keys.ENTER)
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#rx-graph svg g.node"))
    warnings = d.find_elements(By.CSS_SELECTOR, "#rx-warnings li.warning")
    assert warnings and any(w.is_displayed() and a in w.text and b in w.text for w in warnings)
    unknown = d.find_elements(By.CSS_SELECTOR, "#rx-names li.unknown")
    assert len(unknown) == 1 and "Notadrugumab 5 mg: unknown" in unknown[0].text and unknown[0].is_displayed()
    assert sorted(_texts(d, "#rx-graph svg g.node text")) == sorted([a, b])
    assert "rank" in d.find_element(By.ID, "rx-score").text
    _shot(d, d.find_element(By.ID, "prescription"), tmp_path / "ui-prescription.png")

    # ---- nothing from elsewhere, nothing kept in the browser, the note in no console line
    origin = ui_service.rstrip("/")
    resources = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(origin) for r in resources), resources
    kept = d.execute_script("return [localStorage.length, sessionStorage.length, document.cookie]")
    assert kept == [0, 0, ""]
    assert not [e for e in d.get_log("browser") if NOTE_MARK in e["message"] or e["level"] == "SEVERE"]

    # ---- 200% zoom: a 1280-pixel-wide window at 200% is a 640-pixel CSS viewport at 2 device pixels per pixel
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 640, "height": 900, "deviceScaleFactor": 2,
                                                             "mobile": False})
    _wait(d, lambda d: d.execute_script("return window.innerWidth") == 640, 10)
    overflow = d.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, "nothing may need sideways scrolling at 200% zoom"
    d.execute_script("document.getElementById('rx-score').scrollIntoView()")
    (tmp_path / "ui-zoom200.png").write_bytes(d.get_screenshot_as_png())
    for name in ("ui-recommendation.png", "ui-prescription.png", "ui-zoom200.png"):
        assert (tmp_path / name).stat().st_size > 10_000
