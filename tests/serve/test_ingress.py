"""The Serve ingress modes: which variables select them and when they may be set."""

from __future__ import annotations

import logging

import pytest
import ray

from dpr_dist.config import ServeConfig, load_config
from dpr_dist.serve.ingress import apply_ingress_env, ingress_env, running_ingress


def test_modes_and_their_variables():
    assert ServeConfig().ingress == "haproxy"
    assert ingress_env("haproxy") == {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    assert running_ingress(ingress_env("haproxy")) == "haproxy"
    assert running_ingress(ingress_env("proxy")) == "proxy"
    assert running_ingress({}) == "proxy"
    assert running_ingress({"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}) == "direct"
    with pytest.raises(ValueError, match="serve.ingress"):
        ingress_env("nginx")
    with pytest.raises(ValueError, match="ingress"):
        load_config(None, ["serve.ingress=nginx"])
    assert load_config(None, ["serve.ingress=proxy"]).serve.ingress == "proxy"


def test_set_only_for_a_ray_this_process_starts(monkeypatch, caplog):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    env: dict[str, str] = {}
    assert apply_ingress_env("haproxy", env) and env == ingress_env("haproxy")
    cluster = {"RAY_ADDRESS": "10.0.0.1:6379"}  # a cluster's nodes decide: nothing set
    assert not apply_ingress_env("haproxy", cluster) and cluster == {"RAY_ADDRESS": "10.0.0.1:6379"}
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # Ray already up in another mode: a warning
    started = ingress_env("proxy")
    with caplog.at_level(logging.WARNING, logger="dpr_dist"):
        assert not apply_ingress_env("haproxy", started)
    assert started == ingress_env("proxy") and "started in proxy mode" in caplog.text
