"""The HTTP service: a FastAPI app, its Ray Serve deployment and a plain single-process server.

Routes (``/docs`` shows the OpenAPI document):

* ``POST /v1/recommend`` -- top-``k`` packages of a patient's candidate set, explained;
* ``POST /v1/score`` -- a proposed package's score, rank and explanation;
* ``POST /v1/generate`` -- packages from the generation heuristic, scored and explained;
* ``GET /v1/health``, ``GET /v1/model``.

The FastAPI app (:func:`dpr_dist.serve.http.create_app`) runs over a *backend*: the Ray
Serve deployment (``DPRDeployment``, requests batched with ``@serve.batch``) or the plain
single-process baseline (:class:`PlainBackend`, used by ``benchmarks/serve.py``); both
expose the same routes, validation and OpenAPI document.

Deploying:

* ``serve run dpr_dist.serve.app:build_app model_dir=runs/demo/ray/demo-ag/model`` (args
  are ``serve.*`` keys of :class:`~dpr_dist.config.ServeConfig`, plus ``config`` (a YAML
  file), ``num_cpus`` and ``device``);
* :mod:`dpr_dist.serve.deploy`: :func:`~dpr_dist.serve.deploy.serve_config` gives the
  declarative config (``serve deploy``, KubeRay ``RayService`` ``serveConfigV2``);
  :func:`~dpr_dist.serve.deploy.run_service` deploys it (``dpr serve``);
  :func:`~dpr_dist.serve.deploy.reload_model` re-applies it with another ``model_dir`` in
  the deployment's ``user_config``: replicas reload in place, without a restart.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from typing import Any, Mapping

from fastapi import FastAPI

from dpr_dist.config import Config, ServeConfig, load_config
from dpr_dist.serve.http import NoModel, create_app
from dpr_dist.serve.ingress import running_ingress
from dpr_dist.serve.inputs import InputError
from dpr_dist.serve.model import model_version
from dpr_dist.serve.service import DPRService, generation_config

log = logging.getLogger("ray.serve.dpr")  # in a replica: the replica log; elsewhere: the root handlers

APP_NAME = "dpr"
DEPLOYMENT_NAME = "DPRRecommender"
IMPORT_PATH = "dpr_dist.serve.app:build_app"


# ----------------------------------------------------------------------------- backends
class _Backend:
    """Holds the :class:`DPRService` and reloads it from a ``user_config``-shaped dict."""

    replica = "local"

    def __init__(self) -> None:
        self.service: DPRService | None = None
        self.options: dict[str, Any] = {}
        self.reload_error: str | None = None
        self.max_request_bytes = ServeConfig().max_request_bytes
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dpr-model")

    def configure(self, config: Mapping[str, Any]) -> None:
        """Apply a user config: ``model_dir`` (reloaded when it or its content changed),
        ``top_k``, ``rank_by``, ``temperature``, ``max_request_bytes``, ``generation``
        (thresholds), ``device``.

        A failed reload keeps the current model and is reported by ``/v1/health`` and
        ``/v1/model``; without a current model it raises.
        """
        config = dict(config or {})
        model_dir = config.get("model_dir")
        if not model_dir:
            raise ValueError("user_config: model_dir is required")
        self.max_request_bytes = int(config.get("max_request_bytes", self.max_request_bytes))
        top_k = int(config.get("top_k", ServeConfig().top_k))
        rank_by = str(config.get("rank_by", ServeConfig().rank_by))
        temperature = float(config.get("temperature", ServeConfig().temperature))
        try:
            current = self.service
            same = (current is not None and current.bundle.path == model_dir
                    and config.get("device") == self.options.get("device")
                    and model_version(model_dir) == current.version)  # only options changed: no reload
            svc = current if same else DPRService.load(model_dir, device=config.get("device") or None)
            svc = svc.with_options(top_k=top_k, rank_by=rank_by, temperature=temperature,
                                   generation=generation_config(config.get("generation"), svc.bundle.threshold))
        except Exception as exc:  # noqa: BLE001 - reported, the current model stays
            if self.service is None:
                raise
            self.reload_error = f"reload of {model_dir} failed: {type(exc).__name__}: {exc}"
            log.error("%s; still serving %s (version %s)", self.reload_error, self.service.bundle.path,
                      self.service.version)
            return
        self.service, self.options, self.reload_error = svc, config, None
        log.info("loaded model %s version %s from %s (%d training patients)", svc.bundle.model_name, svc.version,
                 model_dir, len(svc.bundle.index))

    def _service(self) -> DPRService:
        if self.service is None:
            raise NoModel("no model loaded")
        return self.service

    def health(self) -> dict[str, Any]:
        svc = self._service()
        return {"status": "ok", "model": svc.bundle.model_name, "model_version": svc.version, "replica": self.replica,
                "ingress": self.ingress(), "loaded_at": svc.loaded_at, "reload_error": self.reload_error}

    def ingress(self) -> str:
        """How requests reach this replica (:func:`dpr_dist.serve.ingress.running_ingress`)."""
        return running_ingress()

    def model_info(self) -> dict[str, Any]:
        return {**self._service().info(), "reload_error": self.reload_error}

    async def _run_batch(self, kind: str, items: list[dict[str, Any]]) -> list[Any]:
        svc = self._service()
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        out = await loop.run_in_executor(self.executor, svc.handle, kind, items)  # the event loop stays free
        log.debug("%s: batch of %d requests in %.1f ms", kind, len(items), (time.perf_counter() - t0) * 1e3)
        return out


class PlainBackend(_Backend):
    """One process, no Ray, one request per model call: the baseline of ``benchmarks/serve.py``."""

    replica = f"plain-{os.getpid()}"

    def ingress(self) -> str:
        return "uvicorn"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.configure(config)

    async def handle(self, kind: str, request: dict[str, Any]) -> dict[str, Any]:
        (result,) = await self._run_batch(kind, [request])
        if isinstance(result, InputError):
            raise result
        return result


def plain_app(config: Mapping[str, Any]) -> FastAPI:
    """The same app without Ray Serve (``uvicorn --factory`` target via :func:`plain_app_from_env`)."""
    backend = PlainBackend(config)
    return create_app(backend, lambda: backend.max_request_bytes)


def plain_app_from_env() -> FastAPI:
    """:func:`plain_app` with the user config from ``DPR_SERVE_MODEL_DIR`` (and ``DPR_SERVE_TOP_K``,
    ``DPR_SERVE_RANK_BY``, ``DPR_SERVE_TEMPERATURE``)."""
    d = ServeConfig()
    return plain_app({"model_dir": os.environ["DPR_SERVE_MODEL_DIR"],
                      "top_k": int(os.environ.get("DPR_SERVE_TOP_K", d.top_k)),
                      "rank_by": os.environ.get("DPR_SERVE_RANK_BY", d.rank_by),
                      "temperature": float(os.environ.get("DPR_SERVE_TEMPERATURE", d.temperature))})


# ----------------------------------------------------------------------------- Ray Serve
def _deployment_class():
    """The Serve deployment class (defined lazily so that importing this module needs no Ray)."""
    from ray import serve

    @serve.deployment(name=DEPLOYMENT_NAME)
    @serve.ingress()
    class DPRDeployment(_Backend):
        """Ray Serve replica: the model of ``user_config["model_dir"]``, batched requests.

        ``user_config``: ``model_dir``, ``top_k``, ``rank_by``, ``temperature``, ``max_request_bytes``,
        ``max_batch_size``, ``batch_wait_timeout_s``, ``generation``, ``device``. Changing
        it (``serve deploy`` / RayService / :func:`~dpr_dist.serve.deploy.reload_model`) calls
        :meth:`reconfigure` on the running replicas: no restart.
        """

        def __init__(self) -> None:
            _Backend.__init__(self)
            from ray import serve as _serve

            self.replica = _serve.get_replica_context().replica_id.unique_id

        def reconfigure(self, user_config: Mapping[str, Any]) -> None:
            self.configure(user_config)
            for fn in (self._recommend, self._score, self._generate):
                if "max_batch_size" in user_config:
                    fn.set_max_batch_size(int(user_config["max_batch_size"]))
                if "batch_wait_timeout_s" in user_config:
                    fn.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))

        def __serve_build_asgi_app__(self):
            from dpr_dist.serve.ui import mount_ui  # issue 9: the clinician review page at /ui (docs/ui.md)

            return mount_ui(create_app(self, lambda: self.max_request_bytes, echo_request_id=False), self)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
        async def _recommend(self, items: list[dict[str, Any]]) -> list[Any]:
            return await self._run_batch("recommend", items)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
        async def _score(self, items: list[dict[str, Any]]) -> list[Any]:
            return await self._run_batch("score", items)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
        async def _generate(self, items: list[dict[str, Any]]) -> list[Any]:
            return await self._run_batch("generate", items)

        async def handle(self, kind: str, request: dict[str, Any]) -> dict[str, Any]:
            fn = {"recommend": self._recommend, "score": self._score, "generate": self._generate}[kind]
            result = await fn(request)
            if isinstance(result, InputError):
                raise result
            return result

    return DPRDeployment


def user_config(sc: ServeConfig, **extra: Any) -> dict[str, Any]:
    """The deployment's ``user_config`` from :class:`ServeConfig` (what a reload changes)."""
    return {"model_dir": sc.model_dir, "top_k": sc.top_k, "rank_by": sc.rank_by, "temperature": sc.temperature,
            "max_request_bytes": sc.max_request_bytes,
            "max_batch_size": sc.max_batch_size, "batch_wait_timeout_s": sc.batch_wait_timeout_s, **extra}


def _config_from_args(args: Mapping[str, Any]) -> tuple[Config, dict[str, Any]]:
    args = dict(args or {})
    extra = {k: args.pop(k) for k in ("num_cpus", "device") if k in args}
    path = args.pop("config", None)
    unknown = set(args) - {f for f in ServeConfig.__dataclass_fields__}
    if unknown:
        raise ValueError(f"build_app: unknown argument(s) {sorted(unknown)}; use serve.* keys "
                         f"{sorted(ServeConfig.__dataclass_fields__)}, config, num_cpus or device")
    return load_config(path, [f"serve.{k}={v}" for k, v in args.items()]), extra


def build_app(args: dict[str, Any]):
    """Application builder for ``serve run dpr_dist.serve.app:build_app key=value ...``.

    Args:
        args: ``serve.*`` keys (``model_dir``, ``top_k``, ``rank_by``, ``temperature``, ``max_request_bytes``,
            ``max_batch_size``, ``batch_wait_timeout_s``, ``num_replicas``), optionally
            ``config`` (a YAML config whose ``serve`` section gives the defaults),
            ``num_cpus`` per replica (default 1) and ``device`` (``cpu`` / ``cuda``).

    Returns:
        The bound Serve ``Application``.
    """
    cfg, extra = _config_from_args(args)
    sc = cfg.serve
    uc = user_config(sc, **({"device": extra["device"]} if extra.get("device") else {}))
    num_gpus = 1 if str(extra.get("device", "")).startswith("cuda") else 0
    return _deployment_class().options(
        num_replicas=sc.num_replicas, user_config=uc, max_ongoing_requests=max(8, 4 * sc.max_batch_size),
        ray_actor_options={"num_cpus": float(extra.get("num_cpus", 1)), "num_gpus": num_gpus},
    ).bind()
