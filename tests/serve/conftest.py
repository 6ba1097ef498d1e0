"""Fixtures of the serving tests: untrained model directories over the ``tiny_prepared`` data."""

from __future__ import annotations

import pytest

from modeldirs import build_model_dir


@pytest.fixture(scope="session")
def model_dirs(tiny_prepared, tmp_path_factory) -> dict[str, str]:
    """One untrained model directory per model: DPR-AG, DPR-WG (descriptions in a separate
    file, the older layout), the GNN variant and the DAM baseline (no descriptions)."""
    root = tmp_path_factory.mktemp("models")
    prepared = str(tiny_prepared["dir"])
    kinds = {"ag": "relation", "wg": "file", "gnn": "relation", "dam": ""}
    return {v: build_model_dir(prepared, str(root / v), v, seed=i, descriptions=d)
            for i, (v, d) in enumerate(kinds.items())}


@pytest.fixture(scope="session")
def raw_records(tiny_data, tiny_prepared):
    """The raw EMR rows of ``tiny_data`` and the prepared test split (same record ids)."""
    from dpr_dist.train.prepared import read_records

    test = read_records(str(tiny_prepared["dir"]), "test")
    return {"emr": tiny_data["emr_table"], "test": test}
