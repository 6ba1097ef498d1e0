"""Random patients and package graphs for the model tests (small, seeded, CPU)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from dpr_dist.config import ModelConfig
from dpr_dist.models.batch import PatientBatch, graphs_from_packages


@dataclass
class Toy:
    """A random training batch in the layout of ``DPR.loss`` and what it was built from."""

    patients: PatientBatch
    graphs: Batch
    owner: torch.Tensor
    packages: list[np.ndarray]
    relation: np.ndarray
    cooc: np.ndarray
    threshold: float
    num_negatives: int
    num_drugs: int
    num_doc_words: int
    num_chars: int


def random_patients(
    batch: int, num_doc_words: int, num_chars: int, max_len: int, empty_rows: tuple[int, ...], seed: int
) -> PatientBatch:
    """``batch`` patients with random documents and notes; rows in ``empty_rows`` have no note."""
    rng = np.random.default_rng(seed)
    doc = (rng.random((batch, num_doc_words)) < 0.3).astype(np.float32)
    lengths = rng.integers(1, max_len + 1, batch)
    lengths[list(empty_rows)] = 0
    note = rng.integers(1, num_chars, (batch, max_len))
    note[np.arange(max_len)[None, :] >= lengths[:, None]] = 0
    return PatientBatch(torch.from_numpy(doc), torch.from_numpy(note), torch.from_numpy(lengths))


def make_toy(
    batch: int = 3,
    num_negatives: int = 2,
    seed: int = 0,
    num_drugs: int = 20,
    num_doc_words: int = 12,
    num_chars: int = 10,
    max_len: int = 9,
    empty_rows: tuple[int, ...] = (1,),
    sizes: tuple[int, int] = (3, 7),
) -> Toy:
    """A random batch of ``batch`` patients, each with 1 positive and ``num_negatives``
    negative packages laid out patient-major, and the matrices the graphs came from."""
    rng = np.random.default_rng(seed)
    relation = rng.choice(np.array([-1, -1, -1, 0, 1, 2], dtype=np.int8), (num_drugs, num_drugs))
    cooc = rng.random((num_drugs, num_drugs)) * 0.1
    threshold = 0.05
    packages = [
        rng.choice(num_drugs, size=int(rng.integers(sizes[0], sizes[1] + 1)), replace=False)
        for _ in range(batch * (1 + num_negatives))
    ]
    return Toy(
        patients=random_patients(batch, num_doc_words, num_chars, max_len, empty_rows, seed + 1),
        graphs=graphs_from_packages(packages, relation, cooc, threshold),
        owner=torch.arange(batch).repeat_interleave(1 + num_negatives),
        packages=packages,
        relation=relation,
        cooc=cooc,
        threshold=threshold,
        num_negatives=num_negatives,
        num_drugs=num_drugs,
        num_doc_words=num_doc_words,
        num_chars=num_chars,
    )


@pytest.fixture
def small_cfg() -> ModelConfig:
    """Small dimensions (the paper's would only slow the tests down)."""
    return ModelConfig(mlp_out=8, char_dim=6, lstm_hidden=8, drug_dim=16, hidden=24, edge_dim=8)


@pytest.fixture
def toy() -> Toy:
    return make_toy()


@pytest.fixture
def make_patients():
    """The :func:`random_patients` builder."""
    return random_patients


@pytest.fixture
def toy_factory():
    """The :func:`make_toy` builder, for tests that need other sizes or seeds."""
    return make_toy
