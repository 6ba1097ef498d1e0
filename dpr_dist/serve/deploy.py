"""Deploying the HTTP service on a Ray cluster: ``dpr serve``, ``serve deploy`` and model reloads.

* :func:`serve_config`: the declarative Serve config of the application
  ``dpr_dist.serve.app:build_app`` (a ``serve deploy`` file, KubeRay ``RayService``
  ``serveConfigV2``), with the model directory in the deployment's ``user_config``;
* :func:`run_service`: applies it on the cluster of ``RAY_ADDRESS`` (or a local Ray),
  waits until the model is loaded and serves until interrupted (``dpr serve``);
* :func:`reload_model`: re-applies it with another ``model_dir``: replicas reload in
  place, without a restart.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dpr_dist.config import Config
from dpr_dist.serve.app import APP_NAME, DEPLOYMENT_NAME, IMPORT_PATH, user_config

log = logging.getLogger("ray.serve.dpr")


def serve_config(cfg: Config, *, model_dir: str | None = None, name: str = APP_NAME, num_cpus: float = 1.0,
                 device: str | None = None) -> dict[str, Any]:
    """The declarative Serve config (``serve deploy`` file, RayService ``serveConfigV2``).

    The model directory travels in the deployment's ``user_config``, so applying the same
    config with another ``model_dir`` reloads the model in place.
    """
    sc = cfg.serve if model_dir is None else cfg.serve.__class__(**{**cfg.serve.__dict__, "model_dir": model_dir})
    uc = user_config(sc, **({"device": device} if device else {}))
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": sc.host, "port": sc.port},
        "applications": [{
            "name": name, "route_prefix": "/", "import_path": IMPORT_PATH,
            "args": {"num_replicas": sc.num_replicas, "max_batch_size": sc.max_batch_size, "num_cpus": num_cpus,
                     **({"device": device} if device else {})},
            "deployments": [{"name": DEPLOYMENT_NAME, "user_config": uc}],
        }],
    }


def _apply(config: dict[str, Any], wait_s: float) -> str:
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    client = serve_start(http_options=config["http_options"])
    client.deploy_apps(schema, _blocking=False)
    _wait_running(config["applications"][0]["name"], wait_s)
    opts = config["http_options"]
    return f"http://{opts['host']}:{opts['port']}"


def _wait_running(name: str, wait_s: float) -> None:
    from ray import serve

    deadline = time.time() + wait_s
    while True:
        app = serve.status().applications.get(name)
        status = getattr(getattr(app, "status", None), "value", getattr(app, "status", None))
        if status == "RUNNING" and all(d.status == "HEALTHY" for d in app.deployments.values()):
            return
        if status == "DEPLOY_FAILED":
            raise RuntimeError(f"serve application {name!r} failed to deploy: {app.message}")
        if time.time() > deadline:
            raise TimeoutError(f"serve application {name!r} not running after {wait_s:.0f}s (status {status})")
        time.sleep(0.5)


def run_service(cfg: Config, *, model_dir: str | None = None, name: str = APP_NAME, num_cpus: float = 1.0,
                device: str | None = None, blocking: bool = True, wait_s: float = 300.0) -> str:
    """Deploy the service on the Ray cluster (``dpr serve``) and return its base URL.

    Joins ``RAY_ADDRESS`` or starts a local Ray (in the ``serve.ingress`` mode,
    :mod:`dpr_dist.serve.ingress`); starts Serve's HTTP ingress on
    ``serve.host:serve.port``; waits until the model is loaded. With ``blocking`` it then
    serves until interrupted (Ctrl-C or SIGTERM shuts Serve down).
    """
    from ray import serve

    from dpr_dist.runtime import ensure_ray
    from dpr_dist.serve.ingress import apply_ingress_env

    apply_ingress_env(cfg.serve.ingress)  # before Ray starts: Ray reads it at start-up
    ensure_ray()
    url = _apply(serve_config(cfg, model_dir=model_dir, name=name, num_cpus=num_cpus, device=device), wait_s)
    log.info("serving %s at %s (OpenAPI: %s/docs)", model_dir or cfg.serve.model_dir, url, url)
    if blocking:
        _stop_on_sigterm()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            log.info("shutting down Serve")
            serve.shutdown()
    return url


def _stop_on_sigterm() -> None:
    """Treat SIGTERM (``kill``, a Kubernetes pod stop) like Ctrl-C: shut Serve down cleanly."""
    import signal
    import threading

    def _raise(signum, frame):  # noqa: ARG001 - the signal handler's signature
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)


def reload_model(cfg: Config, model_dir: str, *, name: str = APP_NAME, num_cpus: float = 1.0,
                 device: str | None = None, wait_s: float = 300.0) -> None:
    """Point a running service (deployed by :func:`run_service` with the same ``cfg``) at
    another model directory: only ``user_config`` changes, so replicas reload in place.

    Joins ``RAY_ADDRESS`` (or the Ray of this process) the way :func:`run_service` does."""
    from dpr_dist.runtime import ensure_ray

    ensure_ray()
    _apply(serve_config(cfg, model_dir=model_dir, name=name, num_cpus=num_cpus, device=device), wait_s)
