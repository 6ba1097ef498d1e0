"""A multi-node Ray cluster of ``ray start`` processes on this machine (end-to-end tests).

A :class:`LocalCluster` is a head (``ray start --head`` with the dashboard, i.e. the job
server) and any number of extra nodes (``ray start --address``), each a separate
``ray start --block`` process with its own CPUs and custom resources. It coexists with
the in-process session cluster of ``tests/conftest.py`` (``ray_session``):

* every port is free-picked (GCS, dashboard, Ray Client server, dashboard agents), and the
  cluster lives in its own ``--temp-dir`` (a short directory under ``/tmp``: Ray's Unix
  socket paths must stay under 108 characters, which pytest's ``tmp_path`` would exceed);
* token authentication stays on: ``RAY_AUTH_MODE=token`` with a token of the cluster's own
  (``RAY_AUTH_TOKEN_PATH``, mode 600) for the nodes and for every client;
* the test process never connects a Ray driver to it: it talks to it over the dashboard's
  HTTP API (with the token) and through the ``ray`` CLI in subprocesses;
* it is stopped by killing the processes it started (each ``ray start`` and everything
  under it), never by ``ray stop``, which stops every Ray on the machine, other test
  sessions' included.

Extra nodes get their own ``--temp-dir`` too, as if they ran on other machines: their own
logs (one log monitor per node, so the job's log holds each line once), sockets and
copies of a job's working directory.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import psutil
import requests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the environment's `ray` and `python`
RAY = str(BIN / "ray")

# Per-node object store: small, the tiny runs need a few MB (Ray's default is 30% of RAM).
OBJECT_STORE_BYTES = 256 * 1024**2


def free_port() -> int:
    """A TCP port that is free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(text: str, lines: int = 60) -> str:
    """The last ``lines`` lines of ``text`` (for assertion messages)."""
    return "\n".join(text.splitlines()[-lines:])


class LocalCluster:
    """A multi-node Ray cluster of ``ray start`` processes on this machine.

    Args:
        root: Directory of the cluster (temp dir of Ray, token, node logs); removed by
            :meth:`shutdown`.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.token_path = root / "auth_token"
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path),
                   PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0",
                   PYTHONUNBUFFERED="1")
        self.env = env
        self.nodes: dict[str, subprocess.Popen] = {}
        self.node_ids: dict[str, str] = {}  # name -> Ray node id (hex)
        self.gcs_address = ""
        self.dashboard_url = ""

    # ------------------------------------------------------------------ nodes
    def start_head(self, num_cpus: int, resources: dict[str, float] | None = None, timeout: float = 90) -> None:
        """``ray start --head`` with the dashboard (job server) on a free loopback port."""
        port, dash = free_port(), free_port()
        self.gcs_address = f"127.0.0.1:{port}"
        self.dashboard_url = f"http://127.0.0.1:{dash}"
        # Ray processes that look the cluster up (e.g. Ray Train's PlacementGroupCleaner calls the
        # state API without an address) must find this one, not another Ray on the machine.
        self.env["RAY_ADDRESS"] = self.gcs_address
        self._start("head", ["--head", f"--port={port}", f"--temp-dir={self.root / 'ray'}",
                             "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                             f"--ray-client-server-port={free_port()}"], num_cpus, resources)
        self.wait_for(lambda: self._running("head") and self._dashboard_up(), timeout, "the head's dashboard")
        self._wait_new_node("head", set(), timeout)

    def add_node(self, name: str, num_cpus: int, resources: dict[str, float] | None = None,
                 timeout: float = 90) -> None:
        """``ray start --address`` one more node and wait until the cluster counts it alive."""
        before = {n["node_id"] for n in self.alive_nodes()}
        self._start(name, [f"--address={self.gcs_address}", f"--temp-dir={self.root / f'ray-{name}'}"],
                    num_cpus, resources)
        self._wait_new_node(name, before, timeout)

    def _wait_new_node(self, name: str, before: set[str], timeout: float) -> None:
        new: list[str] = []

        def joined() -> bool:
            self._running(name)
            new[:] = [n["node_id"] for n in self.alive_nodes() if n["node_id"] not in before]
            return len(new) == 1

        self.wait_for(joined, timeout, f"node {name} to join")
        self.node_ids[name] = new[0]

    def _start(self, name: str, args: Sequence[str], num_cpus: int, resources: dict[str, float] | None) -> None:
        if name in self.nodes:
            raise ValueError(f"node {name!r} exists")
        cmd = [RAY, "start", "--block", *args, f"--num-cpus={num_cpus}", "--num-gpus=0",
               f"--resources={json.dumps(resources or {})}", f"--object-store-memory={OBJECT_STORE_BYTES}",
               f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"]
        log = open(self.root / f"node-{name}.log", "wb")
        self.nodes[name] = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def _running(self, name: str) -> bool:
        """True while the node's ``ray start`` runs; raises with its log when it exited."""
        if self.nodes[name].poll() is not None:
            raise RuntimeError(f"`ray start` of node {name} exited with {self.nodes[name].returncode}:\n"
                               + tail(self.node_log(name), 30))
        return True

    def kill_node(self, name: str) -> None:
        """Remove a node the hard way: SIGKILL its ``ray start`` and every process under it
        (raylet, agents, workers), as when a machine is lost."""
        proc = self.nodes.pop(name)
        _kill_tree(proc.pid)
        proc.wait(timeout=30)

    def shutdown(self) -> None:
        """Kill every process of every node this cluster started, then delete its files
        (nothing of a test cluster needs to outlive it, so no graceful stop)."""
        for name in list(self.nodes):
            self.kill_node(name)
        shutil.rmtree(self.root, ignore_errors=True)

    def node_log(self, name: str) -> str:
        return (self.root / f"node-{name}.log").read_text(errors="replace")

    # ------------------------------------------------------------------ HTTP API
    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_path.read_text()}"}

    def api(self, path: str) -> Any:
        """GET a dashboard API path with the token; the parsed JSON."""
        r = requests.get(self.dashboard_url + path, headers=self.auth_header, timeout=30)
        r.raise_for_status()
        return r.json()

    def _dashboard_up(self) -> bool:
        try:
            return requests.get(self.dashboard_url + "/api/version", headers=self.auth_header, timeout=5).ok
        except requests.ConnectionError:
            return False

    def alive_nodes(self) -> list[dict]:
        """Nodes the GCS counts alive (state API), with their ``resources_total``."""
        return [n for n in self.nodes_state() if n["state"] == "ALIVE"]

    def nodes_state(self) -> list[dict]:
        """Every node the cluster has seen, alive or dead."""
        return self.api("/api/v0/nodes?limit=100&detail=true")["data"]["result"]["result"]

    def actors(self, class_name: str) -> list[dict]:
        """Actors of a class (alive and dead) with their ``node_id`` and ``state``."""
        query = f"limit=1000&detail=true&filter_keys=class_name&filter_predicates=%3D&filter_values={class_name}"
        return self.api(f"/api/v0/actors?{query}")["data"]["result"]["result"]

    # ------------------------------------------------------------------ CLI
    def ray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the ``ray`` CLI with this cluster's environment (its token); output captured."""
        return subprocess.run([RAY, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def submit_args(self, entrypoint: Sequence[str], submission_id: str, working_dir: Path = REPO) -> list[str]:
        """``ray job submit`` arguments (after ``ray``) running ``entrypoint`` in a copy of
        ``working_dir`` (files that ``.gitignore`` and ``.rayignore`` exclude stay behind)."""
        return ["job", "submit", "--address", self.dashboard_url, "--submission-id", submission_id,
                "--working-dir", str(working_dir), "--", *entrypoint]

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> None:
        """Poll ``check`` every ``every`` seconds until it is truthy.

        Raises:
            TimeoutError: after ``timeout`` seconds, naming ``what`` was awaited.
        """
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(every)


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants (raylet, GCS, agents, workers, job drivers)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def train_ag_entrypoint(data: dict[str, str], out: Path, name: str, *overrides: str) -> list[str]:
    """``python jobs/train_ag.py`` on ``configs/tiny.yaml``, data from ``data`` (``emr``,
    ``ddi``), outputs under ``out`` (absolute paths: a job runs in a copy of the repository)."""
    sets = [f"data.emr={data['emr']}", f"data.ddi={data['ddi']}", f"data.prepared={out / 'prepared'}",
            f"train.storage_path={out / 'ray'}", f"train.name={name}", *overrides]
    return ["python", "jobs/train_ag.py", "--config", "configs/tiny.yaml", *(a for s in sets for a in ("--set", s))]
