"""Fixtures of the end-to-end tests: real Ray clusters started with ``ray start``
(:class:`local_cluster.LocalCluster`; see that module for how they coexist with the
in-process ``ray_session`` cluster of ``tests/conftest.py``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from local_cluster import LocalCluster


@pytest.fixture
def local_cluster():
    """A factory of :class:`LocalCluster` (head started); every cluster is torn down after the test."""
    clusters: list[LocalCluster] = []

    def start(num_cpus: int, resources: dict[str, float] | None = None) -> LocalCluster:
        cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="dpr-e2e-", dir="/tmp")))
        clusters.append(cluster)
        cluster.start_head(num_cpus, resources)
        return cluster

    yield start
    for c in clusters:
        c.shutdown()

