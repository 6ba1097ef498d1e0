"""Toy problems for the baseline tests: a two-patient BPR problem and a co-occurrence corpus."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from dpr_dist.config import ModelConfig
from dpr_dist.models.baselines import BASELINES
from dpr_dist.models.batch import PatientBatch, graphs_from_packages

NUM_DRUGS, NUM_DOC_WORDS, NUM_CHARS = 10, 12, 10
#: Drugs 0-3 are prescribed together, and so are drugs 4-7; 8 and 9 never are.
GROUPS = (np.arange(0, 4), np.arange(4, 8))


@dataclass
class TwoPatients:
    """Patient 0 takes package ``a``, patient 1 package ``b``; each one's negative is the other's.

    Layout of ``DPR.loss`` with ``K = 1``: graphs ``[a, b, b, a]``, owner ``[0, 0, 1, 1]``.
    """

    patients: PatientBatch
    graphs: Batch
    owner: torch.Tensor
    packages: list[np.ndarray]


def toy_corpus(n: int = 200, seed: int = 0) -> list[np.ndarray]:
    """``n`` training packages, each 2-4 drugs drawn from one of :data:`GROUPS`."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        group = GROUPS[i % 2]
        out.append(np.sort(rng.choice(group, size=int(rng.integers(2, 5)), replace=False)))
    return out


def graphs_of(packages: list[np.ndarray], seed: int = 0) -> Batch:
    """Package graphs with random relations / co-occurrences (baselines ignore the edges)."""
    rng = np.random.default_rng(seed)
    relation = rng.choice(np.array([-1, -1, 0, 1, 2], dtype=np.int8), (NUM_DRUGS, NUM_DRUGS))
    return graphs_from_packages(packages, relation, rng.random((NUM_DRUGS, NUM_DRUGS)) * 0.1, 0.05)


def build(name: str, cfg: ModelConfig, seed: int = 0, fit: bool = True, **kwargs):
    """Baseline ``name`` seeded with ``seed``; fitted on :func:`toy_corpus` when it has ``fit_packages``.

    The test corpus is tiny: LDA gets 3 fit passes unless ``max_iter`` is given, and
    Package2vec 40 epochs without down-sampling (every drug is "frequent" among 10).
    """
    if name == "lda":
        kwargs.setdefault("max_iter", 3)
    if name == "package2vec":
        kwargs.setdefault("epochs", 40)
        kwargs.setdefault("sample", 0.0)
    torch.manual_seed(seed)
    model = BASELINES[name](replace(cfg, name=name), NUM_DRUGS, NUM_DOC_WORDS, NUM_CHARS, **kwargs)
    if fit and hasattr(model, "fit_packages"):
        model.fit_packages(toy_corpus(), NUM_DRUGS, seed=0)
    return model


@pytest.fixture
def make_baseline():
    """The :func:`build` builder."""
    return build


@pytest.fixture
def corpus() -> list[np.ndarray]:
    """:func:`toy_corpus` (the packages the fitted baselines were fitted on)."""
    return toy_corpus()


@pytest.fixture
def make_graphs():
    """The :func:`graphs_of` builder."""
    return graphs_of


@pytest.fixture
def two_patients(make_patients) -> TwoPatients:
    a, b = np.array([0, 1, 2, 3]), np.array([4, 5, 6])
    packages = [a, b, b, a]
    return TwoPatients(
        patients=make_patients(2, NUM_DOC_WORDS, NUM_CHARS, 7, (1,), 4),  # note lengths 4 and 0
        graphs=graphs_of(packages),
        owner=torch.tensor([0, 0, 1, 1]),
        packages=packages,
    )
