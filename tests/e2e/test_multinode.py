"""Two-node DDP training through ``ray job submit``, losing a node mid-run (issues 3 and 7).

``ray job submit`` (the real CLI, the repository as ``--working-dir``, token
authentication on) of ``jobs/train_ag.py`` to a head started with ``ray start --head``: the
job prints the test metrics table that its model directory records.

The cluster: a head and a second node started with ``ray start``, one ``dpr_trainer`` slot
each (a custom resource); ``train.worker_resources={dpr_trainer: 1}`` makes each of the two
training workers take one slot, so the two DDP ranks run on different nodes.
``jobs/train_ag.py`` is submitted to the head on already prepared tiny data (NCF
pre-training, then DPR-AG). Once Ray Train has registered a DPR-AG checkpoint, the second
node is killed (SIGKILL of every process of the node, as when a machine is lost) and a
replacement node with a ``dpr_trainer`` slot is started, as an autoscaler would. Ray Train
restarts the worker group on the head and the new node from the latest checkpoint
(``FailureConfig(max_failures)``) and the run finishes.

The head has one CPU more than its worker needs: the blocks of the training split that
lived on the lost node are rebuilt from lineage by Ray Data read tasks, which need a CPU
that no training worker holds (with every CPU held by a worker, the restarted run waits
forever).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
import requests

from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

from local_cluster import RAY, tail, train_ag_entrypoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

SLOT = "dpr_trainer"
EPOCHS = 6
TABLE_ROW = re.compile(r"^(ncf|popularity|ag)\s+((?:[-\d.]+\s+){5}[-\d.]+)\s*$", re.M)


def registered_checkpoint(snapshot: Path) -> str | None:
    """The latest checkpoint Ray Train's controller has registered for a run (from the
    snapshot it writes next to the run's checkpoints), or None.

    A checkpoint directory exists as soon as rank 0 has written it, but the controller
    registers it (and hands it to a restarted worker group) only when it has polled the
    report from every rank, up to a few seconds later.
    """
    try:
        latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result")
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or being written
        return None
    return latest["checkpoint_dir_name"] if latest else None


def test_two_node_training_resumes_after_losing_a_node(local_cluster, tiny_data, tiny_prepared, tmp_path):
    out = tmp_path / "job"
    shutil.copytree(tiny_prepared["dir"], out / "prepared")  # the job starts at pre-training
    cluster = local_cluster(num_cpus=2, resources={SLOT: 1})
    # token authentication is on: the job API refuses requests without the cluster's token
    jobs_api = cluster.dashboard_url + "/api/jobs/"
    assert requests.get(jobs_api, timeout=30).status_code == 401
    assert requests.get(jobs_api, headers={"Authorization": "Bearer " + "0" * 64}, timeout=30).status_code == 403
    cluster.add_node("b", num_cpus=1, resources={SLOT: 1})
    entry = train_ag_entrypoint(tiny_data, out, "multinode", f"train.epochs={EPOCHS}",
                                f"train.worker_resources={{{SLOT}: 1}}", "train.max_failures=3")
    submit = subprocess.Popen([RAY, *cluster.submit_args(entry, "dpr-multinode")], env=cluster.env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    lines: list[str] = []
    times = {"submitted": time.monotonic()}

    def read() -> None:  # the job's log as `ray job submit` streams it, also kept in job.log
        with open(tmp_path / "job.log", "w") as fh:
            for line in submit.stdout:
                if "resuming at epoch" in line:
                    times.setdefault("resumed", time.monotonic())
                lines.append(line)
                fh.write(line)
                fh.flush()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # once Ray Train has registered a DPR-AG checkpoint: remove node b mid-run, start a replacement
        snapshot = out / "ray" / "multinode-ag" / CHECKPOINT_MANAGER_SNAPSHOT_FILENAME
        registered: list[str] = []

        def checkpoint_or_exit() -> bool:
            registered[:] = [c for c in [registered_checkpoint(snapshot)] if c]
            return bool(registered) or submit.poll() is not None

        cluster.wait_for(checkpoint_or_exit, 360, "a registered DPR-AG checkpoint")
        assert submit.poll() is None, tail("".join(lines))
        at_kill = int(registered[0].removeprefix("epoch_"))
        times["killed"] = time.monotonic()
        cluster.kill_node("b")
        cluster.add_node("c", num_cpus=1, resources={SLOT: 1})
        times["replaced"] = time.monotonic()
        rc = submit.wait(timeout=300)
        times["finished"] = time.monotonic()
    finally:
        if submit.poll() is None:
            submit.kill()
        reader.join(timeout=10)
    logs = "".join(lines)
    print("seconds after submission: " + ", ".join(f"{k} {v - times['submitted']:.0f}" for k, v in times.items()))
    assert rc == 0, tail(logs, 120)
    info = cluster.api("/api/jobs/dpr-multinode")
    assert info["status"] == "SUCCEEDED" and info["entrypoint"].startswith("python jobs/train_ag.py")
    # the job ran in the uploaded copy of the repository (--working-dir), not in the checkout
    assert info["runtime_env"]["working_dir"].startswith("gcs://")

    # node b is gone for good; the run finished every epoch exactly once
    states = {n["node_id"]: n["state"] for n in cluster.nodes_state()}
    assert states[cluster.node_ids["b"]] == "DEAD"
    metrics = json.loads((out / "ray" / "multinode-ag" / "model" / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == list(range(EPOCHS))
    assert (out / "ray" / "multinode-ag" / f"epoch_{EPOCHS - 1:04d}").is_dir()

    # ... by restoring the checkpoint registered before the loss (or a later one): rank 0 of
    # the new worker group says where it resumed, and the controller logged the retry
    resumed = [int(e) for e in re.findall(r"\[ag\] resuming at epoch (\d+)", logs)]
    assert len(set(resumed)) == 1 and at_kill + 1 <= resumed[0] < EPOCHS, tail(logs, 120)
    assert "[FailurePolicy] RETRY" in logs
    assert "[ag] epoch 1/" in logs and f"[ag] epoch {EPOCHS}/{EPOCHS}" in logs
    # the job printed the test metrics table, and its DPR-AG row is what the model directory recorded
    assert "test metrics (" in logs, tail(logs)
    rows = {m.group(1): m.group(2).split() for m in TABLE_ROW.finditer(logs)}
    assert set(rows) == {"ncf", "popularity", "ag"}, tail(logs)
    assert float(rows["ag"][2]) == pytest.approx(metrics["test"]["f1"], abs=1e-4)

    # one worker per node in every worker group: {head, b} before the loss, {head, c} after
    groups: dict[str, list[str]] = defaultdict(list)
    for actor in cluster.actors("RayTrainWorker"):
        groups[actor["placement_group_id"]].append(actor["node_id"])
    name = {v: k for k, v in cluster.node_ids.items()}
    placed = sorted(tuple(sorted(name[n] for n in nodes)) for nodes in groups.values())
    assert all(len(set(p)) == 2 for p in placed), placed  # two ranks, two nodes
    assert ("b", "head") in placed and ("c", "head") in placed, placed
