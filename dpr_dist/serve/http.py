"""The FastAPI app of the service: routes, validation errors, body limit, request ids.

:func:`create_app` builds the app over a *backend* (anything with async
``handle(kind, request_dict)``, ``health()`` and ``model_info()``), so the Ray Serve
deployment and the plain single-process baseline (:mod:`dpr_dist.serve.app`) expose the
same routes, the same validation and the same OpenAPI document.

Errors are answered in one shape (:class:`~dpr_dist.serve.api.ErrorResponse`) naming the
field; they never echo submitted values, so notes and lab values stay out of responses.
Every request gets an id (the client's ``X-Request-ID`` or a generated one) and one access
log line (method, path, status, milliseconds; never the body).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dpr_dist.serve.api import (
    ERROR_RESPONSES, GenerateRequest, HealthResponse, ModelInfo, RecommendRequest, RecommendResponse, ScoreRequest,
    ScoreResponse)
from dpr_dist.serve.inputs import InputError

log = logging.getLogger("ray.serve.dpr")  # in a replica: the replica log; elsewhere: the root handlers

_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


class NoModel(RuntimeError):
    """No model is loaded (HTTP 503)."""


def _error(status: int, error: str, message: str, request: Request | None,
           fields: list[dict[str, str]] | None = None) -> JSONResponse:
    rid = getattr(request.state, "request_id", None) if request is not None else None
    body = {"error": error, "message": message, "fields": fields or [], "request_id": rid}
    return JSONResponse(body, status_code=status)


def _field(loc: tuple | list) -> str:
    """``("body", "patient", "labs", 2, "name")`` -> ``patient.labs[2].name``."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        where = e.get("ctx", {}).get("error", "")
        return _error(400, "bad_request", f"malformed JSON body ({where})" if where else "malformed JSON body",
                      request)
    # never echo the submitted values (e["input"]): notes and lab values stay out of responses
    fields = [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid value"))} for e in errors]
    first = fields[0] if fields else {"field": "body", "message": "invalid request"}
    return _error(422, "validation_error", f"{first['field']}: {first['message']}", request, fields)


class BodyLimit:
    """ASGI middleware: refuse bodies above ``limit()`` bytes with 413, before parsing, and
    give each request an id (``X-Request-ID``, generated when absent) and an access log line
    (method, path, status, milliseconds; never the body)."""

    def __init__(self, app, limit: Callable[[], int], echo_request_id: bool = True) -> None:
        self.app, self.limit, self.echo = app, limit, echo_request_id

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = headers.get("x-request-id", "")
        if not rid or (self.echo and not _REQUEST_ID.match(rid)):  # behind Serve: its proxy set and returns it
            rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status = {"code": 500}

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                if self.echo:  # (Ray Serve's proxy adds the header itself)
                    hdrs = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                    message = {**message, "headers": hdrs + [(b"x-request-id", rid.encode())]}
            await send(message)

        limit = int(self.limit())
        declared = headers.get("content-length")
        too_big = declared is not None and declared.isdigit() and int(declared) > limit
        chunks, size, more = [], 0, not too_big
        while more:  # read (at most limit + 1 bytes of) the body, then replay it
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > limit:
                too_big = True
                break
        body = b"".join(chunks)
        if too_big:
            resp = JSONResponse({"error": "payload_too_large", "request_id": rid, "fields": [],
                                 "message": f"request body exceeds the limit of {limit} bytes "
                                            "(serve.max_request_bytes)"}, status_code=413)
            await resp(scope, receive, send_with_id)
        else:
            replayed = {"done": False}

            async def replay():
                if not replayed["done"]:
                    replayed["done"] = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_with_id)
        log.info("request_id=%s %s %s -> %d in %.1f ms", rid, scope.get("method"), scope.get("path"),
                 status["code"] if not too_big else 413, (time.perf_counter() - t0) * 1e3)


def create_app(backend: Any, max_request_bytes: Callable[[], int] | int = 65536,
               echo_request_id: bool = True) -> FastAPI:
    """The FastAPI app over a backend.

    Args:
        backend: Has ``async handle(kind, request: dict) -> dict`` (raising
            :class:`InputError` for a request the model cannot take, :class:`NoModel`
            when none is loaded), ``health() -> dict`` and ``model_info() -> dict``.
        max_request_bytes: Body size limit, or a callable returning it (read per request,
            so a reload can change it).
        echo_request_id: Add the ``X-Request-ID`` response header (off behind Ray Serve,
            whose proxy adds it and passes the id in the request header).

    Returns:
        The app; its OpenAPI document lists every route with its error responses.
    """
    limit = max_request_bytes if callable(max_request_bytes) else (lambda: int(max_request_bytes))
    app = FastAPI(title="DPR drug package recommendation", version="1",
                  description="Drug package recommendation with DPR-WG / DPR-AG (Zheng et al.). Recommendations "
                              "support, and do not replace, clinical judgement.")
    app.add_exception_handler(RequestValidationError, _validation_handler)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return _error(exc.status_code, kind.get(exc.status_code, "http_error"), str(exc.detail), request)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return _error(422, "validation_error", str(exc), request, [{"field": exc.field, "message": exc.message}])

    @app.exception_handler(NoModel)
    async def _no_model(request: Request, exc: NoModel) -> JSONResponse:
        return _error(503, "unavailable", str(exc), request)

    async def run(kind: str, request: Request, body: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        rid = request.state.request_id
        result = await backend.handle(kind, body.model_dump(mode="json"))
        log.info("request_id=%s %s record_id=%s model_version=%s in %.1f ms", rid, kind, body.patient.record_id,
                 result.get("model_version"), (time.perf_counter() - t0) * 1e3)
        return {**result, "request_id": rid}

    @app.post("/v1/recommend", response_model=RecommendResponse, responses=ERROR_RESPONSES,
              summary="Top-k packages for a patient, with an explanation of the first")
    async def recommend(body: RecommendRequest, request: Request) -> dict[str, Any]:
        return await run("recommend", request, body)

    @app.post("/v1/score", response_model=ScoreResponse, responses=ERROR_RESPONSES,
              summary="Score a proposed package against the patient's candidate set")
    async def score(body: ScoreRequest, request: Request) -> dict[str, Any]:
        return await run("score", request, body)

    @app.post("/v1/generate", response_model=RecommendResponse, responses=ERROR_RESPONSES,
              summary="Packages from the generation heuristic (paper 6), scored and explained")
    async def generate(body: GenerateRequest, request: Request) -> dict[str, Any]:
        return await run("generate", request, body)

    @app.get("/v1/health", response_model=HealthResponse, responses={503: ERROR_RESPONSES[503]})
    async def health() -> dict[str, Any]:
        return backend.health()

    @app.get("/v1/model", response_model=ModelInfo, responses={503: ERROR_RESPONSES[503]})
    async def model() -> dict[str, Any]:
        return jsonable_encoder(backend.model_info())

    app.add_middleware(BodyLimit, limit=limit, echo_request_id=echo_request_id)
    return app
