"""``ray job submit`` of ``jobs/train_ag.py`` to a ``ray start --head`` cluster (issue 3).

The same command as in ``docs/cluster.md`` (section 1): the real CLI, the repository as
``--working-dir`` (uploaded, so the job runs in a copy and data paths are absolute), token
authentication on (requests without the cluster's token are refused). The job prepares
the tiny synthetic EMR of the ``tiny_data`` fixture, pre-trains NCF, trains DPR-AG with 2
workers and prints the test metrics table.
"""

from __future__ import annotations

import json
import re

import pytest
import requests

from local_cluster import tail, train_ag_entrypoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

TABLE_ROW = re.compile(r"^(ncf|popularity|ag)\s+((?:[-\d.]+\s+){5}[-\d.]+)\s*$", re.M)


def test_submitted_train_ag_job_succeeds_and_prints_test_metrics(local_cluster, tiny_data, tmp_path):
    cluster = local_cluster(num_cpus=2)
    jobs_api = cluster.dashboard_url + "/api/jobs/"
    assert requests.get(jobs_api, timeout=30).status_code == 401  # no token
    assert requests.get(jobs_api, headers={"Authorization": "Bearer " + "0" * 64}, timeout=30).status_code == 403
    out = tmp_path / "job"
    res = cluster.ray(*cluster.submit_args(train_ag_entrypoint(tiny_data, out, "submit"), "dpr-submit-1"),
                      timeout=360)
    logs = res.stdout + res.stderr
    assert res.returncode == 0, tail(logs)

    status = cluster.ray("job", "status", "--address", cluster.dashboard_url, "dpr-submit-1")
    assert "Job 'dpr-submit-1' succeeded" in status.stdout, status.stdout + status.stderr
    info = cluster.api("/api/jobs/dpr-submit-1")
    assert info["status"] == "SUCCEEDED" and info["entrypoint"].startswith("python jobs/train_ag.py")

    # the job ran in the uploaded copy of the repository, not in the checkout
    assert info["runtime_env"]["working_dir"].startswith("gcs://")

    # the test metrics table, and its DPR-AG row is what the model directory recorded
    assert "test metrics (" in logs, tail(logs)
    rows = {m.group(1): m.group(2).split() for m in TABLE_ROW.finditer(logs)}
    assert set(rows) == {"ncf", "popularity", "ag"}, tail(logs)
    metrics = json.loads((out / "ray" / "submit-ag" / "model" / "metrics.json").read_text())
    assert float(rows["ag"][2]) == pytest.approx(metrics["test"]["f1"], abs=1e-4)
    assert [h["epoch"] for h in metrics["history"]] == [0, 1, 2]  # configs/tiny.yaml: 3 epochs
    assert (out / "prepared" / "manifest.json").is_file()
    assert "[ag] epoch 3/3" in logs  # the workers' progress reached the job's log
