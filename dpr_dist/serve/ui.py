"""The clinician review page (``/ui``) on the service's FastAPI app.

:func:`mount_ui` adds to the app of :mod:`dpr_dist.serve.http`:

* ``GET /ui/`` -- the page (``ui/index.html``; ``/ui`` redirects there), with its static
  files under ``/ui/static/`` (``app.css``, ``app.js``, the vendored graph library
  ``vendor/d3.v7.9.2.min.js`` with its licence, ``examples.json``);
* ``GET /ui/vocabulary`` -- what the form's pickers offer: the model's drug names and the
  genders, insurance kinds and abnormal lab levels of its disease-document vocabulary;
* ``POST /ui/resolve`` -- drug names as typed -> the model's drug names (the
  :class:`~dpr_dist.serve.inputs.DrugResolver` rules of ``/v1/score``), unknown names
  reported one by one instead of the first only;
* ``POST /ui/graph`` -- every edge of a package's graph (paper 4.2.1), including pairs with
  no labelled interaction, which ``/v1`` explanations leave out.

The page calls these and the ``/v1`` routes (recommend, score, generate) from the browser.
Nothing is loaded from elsewhere (a ``Content-Security-Policy`` of ``'self'``), nothing is
stored in the browser, and these routes log nothing: the request bodies (drug names) stay
out of logs like every ``/v1`` body. They are left out of the OpenAPI document, which
describes the ``/v1`` API only.

``examples.json`` holds synthetic patients of :mod:`dpr_dist.data.synth` written by
:func:`write_examples` (``python -m dpr_dist.serve.ui``); no real patient is bundled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from dpr_dist.data.graphs import ANTAGONISM, NONE, SYNERGISM
from dpr_dist.eval.evaluate import candidate_graphs
from dpr_dist.eval.package_csr import PackageCSR
from dpr_dist.serve.http import NoModel
from dpr_dist.serve.inputs import InputError

#: The page's files.
UI_DIR = Path(__file__).with_name("ui")
#: The bundled example patients.
EXAMPLES_FILE = UI_DIR / "examples.json"
#: Synthetic data the examples come from: the ``synth`` section of ``configs/demo.yaml``
#: (so their prescriptions use the demo model's drug names), fresh records.
EXAMPLES_SYNTH = {"records": 40, "drugs": 120, "seed": 0, "conditions": 12, "notes": True, "mean_package": 10}

#: Headers of every ``/ui`` response: same-origin only, no caching of model answers.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_TYPES = {NONE: "none", SYNERGISM: "synergism", ANTAGONISM: "antagonism"}


class DrugNames(BaseModel):
    """Body of ``/ui/resolve`` and ``/ui/graph``."""

    model_config = ConfigDict(extra="forbid")
    drugs: list[str] = Field(min_length=1, max_length=200)


class _Static(StaticFiles):
    """Static files with :data:`HEADERS`."""

    async def get_response(self, path: str, scope) -> Any:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def _service(backend: Any):
    service = getattr(backend, "service", None)
    if service is None:
        raise NoModel("no model loaded")
    return service


def vocabulary(service) -> dict[str, Any]:
    """The pickers' choices from a :class:`~dpr_dist.serve.service.DPRService`.

    Document tokens are ``gender:<g>``, ``insurance:<kind>`` and ``lab:<name>:<level>``
    (:func:`dpr_dist.data.documents.disease_documents`); a lab or insurance value sent with
    spaces in place of the token's underscores gives the same token back.
    """
    genders, insurance, labs = set(), set(), {}
    for token in service.doc_vocab.to_pylist():
        kind, _, rest = str(token).partition(":")
        if kind == "gender":
            genders.add(rest)
        elif kind == "insurance" and rest != "unknown":
            insurance.add(rest.replace("_", " "))
        elif kind == "lab":
            name, _, level = rest.rpartition(":")
            labs.setdefault(name.replace("_", " "), set()).add(level)
    return {"model": service.bundle.model_name, "model_version": service.version,
            "drugs": sorted(map(str, service.names), key=str.lower),
            "genders": sorted(g for g in genders if g != "unknown"), "insurance": sorted(insurance),
            "labs": [{"name": n, "levels": sorted(lv)} for n, lv in sorted(labs.items())]}


def resolve(service, names: list[str]) -> list[dict[str, Any]]:
    """Each typed name with the model's drug name it matches, or ``None`` and why."""
    out = []
    for raw in names:
        try:
            (drug,) = service.resolve_drugs([raw])
            out.append({"input": raw, "drug": str(service.names[drug]), "message": None})
        except InputError as err:
            out.append({"input": raw, "drug": None, "message": err.message})
    return out


def package_edges(service, names: list[str]) -> list[dict[str, Any]]:
    """Every ordered edge of the package graph of ``names`` (the model's drug names).

    Types: ``synergism``, ``antagonism``, ``none`` (labelled "no interaction") or
    ``unknown`` (not labelled; an edge because the pair co-occurs above the threshold).
    """
    b = service.bundle
    ids = service.resolve_drugs(names)
    graphs = candidate_graphs(PackageCSR(np.array([0, ids.size], np.int64), ids), b.relation, b.cooc, b.threshold)
    src = graphs.drug[graphs.edge_index[0]].numpy()
    dst = graphs.drug[graphs.edge_index[1]].numpy()
    rel, p = graphs.edge_rel.numpy().astype(np.int64), graphs.edge_p.numpy()
    return [{"drug_1": str(service.names[a]), "drug_2": str(service.names[c]), "type": _TYPES.get(int(r), "unknown"),
             "co_occurrence": float(q)} for a, c, r, q in zip(src, dst, rel, p)]


def mount_ui(app: FastAPI, backend: Any) -> FastAPI:
    """Add the review page's routes to the service's app.

    Args:
        app: The app of :func:`dpr_dist.serve.http.create_app`.
        backend: Its backend; the model is its ``service`` attribute (a
            :class:`~dpr_dist.serve.service.DPRService`, ``None`` before a load: 503).

    Returns:
        ``app``.
    """

    @app.get("/ui", include_in_schema=False)
    async def ui_redirect() -> RedirectResponse:
        return RedirectResponse("ui/", status_code=307, headers=HEADERS)

    @app.get("/ui/", include_in_schema=False)
    async def ui_page() -> FileResponse:
        return FileResponse(UI_DIR / "index.html", media_type="text/html", headers=HEADERS)

    @app.get("/ui/vocabulary", include_in_schema=False)
    def ui_vocabulary() -> JSONResponse:
        return JSONResponse(vocabulary(_service(backend)), headers=HEADERS)

    @app.post("/ui/resolve", include_in_schema=False)
    def ui_resolve(body: DrugNames) -> JSONResponse:
        return JSONResponse({"drugs": resolve(_service(backend), body.drugs)}, headers=HEADERS)

    @app.post("/ui/graph", include_in_schema=False)
    def ui_graph(body: DrugNames) -> JSONResponse:
        return JSONResponse({"edges": package_edges(_service(backend), body.drugs)}, headers=HEADERS)

    app.mount("/ui/static", _Static(directory=UI_DIR), name="ui-static")
    return app


# ----------------------------------------------------------------------------- examples
def _label(p: dict[str, Any], n_abnormal: int) -> str:
    surgery = {True: "surgery", False: "no surgery", None: "surgery unknown"}[p["surgery"]]
    return f"{p['gender']}, {p['age']:.0f} y, {p['insurance'] or 'insurance unknown'}, {surgery}, " \
           f"{n_abnormal} abnormal lab(s)"


def examples(count: int = 6) -> list[dict[str, Any]]:
    """Synthetic example patients (:data:`EXAMPLES_SYNTH`), each with its synthetic
    prescription: records holding an antagonistic pair first, varied in gender and surgery."""
    from dpr_dist.data import synth
    from dpr_dist.data.documents import lab_levels
    from dpr_dist.data.normalize import DrugNormalizer

    emr, ddi = synth.generate(**EXAMPLES_SYNTH)
    pairs = list(zip(ddi["drug_a"].to_pylist(), ddi["drug_b"].to_pylist(), ddi["label"].to_pylist()))
    norm = DrugNormalizer({n for a, b, _ in pairs for n in (a, b)})
    anta = [{a, b} for a, b, label in pairs if label == "antagonism"]
    levels = lab_levels(emr["labs"].combine_chunks())[0].to_pylist()
    rows = []
    for row, lv in zip(emr.to_pylist(), levels):
        package = {norm(name) for name in row["drugs"]}
        has_anta = any(pair <= package for pair in anta)
        rows.append((not has_anta, row, sum(x in ("high", "low", "abnormal") for x in lv)))
    rows.sort(key=lambda t: t[0])  # stable: record order within each group
    groups: dict[tuple, list] = {}
    for t in rows:  # round-robin over (gender, surgery) for variety
        groups.setdefault((t[1]["gender"], t[1]["surgery"]), []).append(t)
    picked = [g[j] for j in range(len(rows)) for g in groups.values() if j < len(g)][:count]
    out = []
    for i, (_, row, n_abnormal) in enumerate(picked):
        patient = {k: row[k] for k in ("gender", "age", "insurance", "surgery", "labs", "note")}
        patient.update(record_id=f"example-{i + 1}", patient_id=f"example-patient-{i + 1}")
        out.append({"label": f"Example {i + 1}: {_label(patient, n_abnormal)}", "patient": patient,
                    "prescription": list(row["drugs"])})
    return out


def write_examples(path: str | Path = EXAMPLES_FILE, count: int = 6) -> Path:
    """Write :func:`examples` as JSON (the bundled ``examples.json``)."""
    path = Path(path)
    path.write_text(json.dumps({"source": f"dpr_dist.data.synth.generate(**{EXAMPLES_SYNTH})",
                                "examples": examples(count)}, indent=1) + "\n")
    return path


if __name__ == "__main__":
    print(write_examples())
