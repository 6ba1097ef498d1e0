"""Shared fixtures: one local Ray cluster per session, a real S3 endpoint on loopback,
and small synthetic data sets prepared once per session."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The suite makes dozens of tiny Ray Train runs, where start-up and polling dominate. Ray
# Train's controller polls its workers every 2 s by default (a finished run waits up to that
# long to be noticed), and each run starts a preemption-watcher actor, one more process on a
# 2-core machine, for spot-instance draining that no test exercises. Every Ray the tests
# start inherits these: the session cluster, `ray start` heads and `dpr` subprocesses.
# State tracking (what the dashboard's Train page shows) is on: tests read runs' start and
# end times from Ray Train's state actor.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "1")
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path under ``../shared/data``; skips the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (CI and developer machines have it)")
    return path


# A line Ray's driver threads print into this process's stdout: a raylet message such as
# "(raylet) Task ServeController.graceful_shutdown failed ..." that Serve's own shutdown causes
# and that arrives seconds later, in whichever test runs then, or a worker's log line.
_RAY_DRIVER_LINE = re.compile(r"^(\x1b\[[0-9;]*m)?\((raylet|autoscaler|[A-Za-z_]*\s*pid=[^)]*)\)")


@pytest.fixture
def dpr_stdout(capsys):
    """Reads what ``dpr`` printed to stdout so far, without Ray's own driver lines.

    Returns:
        A function that returns the captured stdout (and clears the capture), Ray's lines removed.
    """
    def read() -> str:
        out = capsys.readouterr().out
        return "".join(line for line in out.splitlines(keepends=True) if not _RAY_DRIVER_LINE.match(line))
    return read


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto's server mode) on loopback, with a bucket ``dpr``.

    Sets the standard AWS_* variables for this process, so pyarrow, s3fs and boto3 use it.
    """
    port = _free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    deadline = time.time() + 30
    while True:
        try:
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="dpr")
            break
        except Exception:
            if time.time() > deadline:
                proc.kill()
                raise
            time.sleep(0.3)
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray cluster shared by the whole test session, in the Serve ingress mode
    that ``dpr serve`` ships with (``serve.ingress=haproxy``: Ray reads it at start-up)."""
    import ray

    from dpr_dist.config import ServeConfig
    from dpr_dist.serve.ingress import ingress_env

    # A replica behind the direct ingress drains for at least 30 s before it stops, so that
    # load balancers stop routing to it; the tests' one client needs no drain, and each
    # Serve shutdown would otherwise cost those 30 s.
    env = {**ingress_env(ServeConfig().ingress), "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}
    old = {k: os.environ.get(k) for k in env}
    if not ray.is_initialized():
        os.environ.update(env)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield ray
    ray.shutdown()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Small synthetic EMR + interactions written in the contract."""
    from dpr_dist.data import synth

    out = tmp_path_factory.mktemp("synth")
    emr, ddi = synth.generate(records=400, drugs=40, seed=0, mean_package=8)
    synth.write(emr, ddi, str(out))
    return {"dir": out, "emr": str(out / "emr"), "ddi": str(out / "ddi.parquet"), "emr_table": emr,
            "ddi_table": ddi}


@pytest.fixture(scope="session")
def tiny_prepared(tiny_data, ray_session, tmp_path_factory):
    """``tiny_data`` run through ``prepare`` once per session."""
    from dpr_dist.config import load_config
    from dpr_dist.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared")
    cfg = load_config(None, ["data.rows_per_block=128"])
    manifest = prepare(cfg, emr=tiny_data["emr"], ddi=tiny_data["ddi"], out=str(out))
    return {"dir": out, "manifest": manifest, "cfg": cfg}
