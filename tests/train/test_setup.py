"""The worker's model wiring: every model name builds, fits on the training packages, or is skipped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpr_dist.config import Config, ModelConfig
from dpr_dist.eval.package_csr import packages_to_csr
from dpr_dist.models.baselines import BR, DAM, LDA, NearestNeighbor, Package2vec
from dpr_dist.models.dpr import DPR
from dpr_dist.models.ncf import NCF
from dpr_dist.models.variants import VARIANTS
from dpr_dist.train.run import MODELS
from dpr_dist.train.stored import stopped_early
from dpr_dist.train.setup import RunSpec, build_model, fit_packages, is_trainable

M, V = 10, 6
MODEL = ModelConfig(mlp_out=4, char_dim=4, lstm_hidden=4, drug_dim=8, hidden=16, edge_dim=4)


def spec(kind: str, seed: int = 0) -> RunSpec:
    cfg = Config(model=MODEL)
    cfg = cfg.with_overrides([f"train.seed={seed}"])
    return RunSpec(cfg=cfg, kind=kind, epochs=1, num_drugs=M, num_doc_words=V, val=None)


def corpus(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = (np.arange(0, 5), np.arange(5, 10))
    return packages_to_csr([np.sort(rng.choice(groups[i % 2], int(rng.integers(2, 5)), replace=False))
                            for i in range(n)])


@pytest.mark.parametrize("kind, cls", [("ncf", NCF), ("ag", DPR), ("gnn", DPR), ("wg_type", DPR),
                                       ("nn", NearestNeighbor), ("package2vec", Package2vec), ("lda", LDA),
                                       ("br", BR), ("dam", DAM)])
def test_build_model_covers_every_name(kind, cls):
    model = build_model(spec(kind))
    assert type(model) is cls
    if isinstance(model, DPR):
        assert model.variant.name == kind
    assert is_trainable(model) == (kind != "nn")


def test_every_trainable_name_is_known_to_train():
    assert set(MODELS) == {"ncf", *VARIANTS, "nn", "package2vec", "lda", "br", "dam"}
    with pytest.raises(ValueError, match="popularity"):
        build_model(spec("popularity"))


def test_build_model_is_seeded():
    a, b, c = (build_model(spec("dam", seed)) for seed in (3, 3, 4))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


@pytest.mark.parametrize("kind", ["package2vec", "lda"])
def test_fit_packages_fills_buffers_deterministically(kind):
    packages = corpus()
    a, b = build_model(spec(kind)), build_model(spec(kind))
    assert not bool(a.fitted)
    assert fit_packages(a, packages, M, seed=1) and fit_packages(b, packages, M, seed=1)
    assert bool(a.fitted)
    buf = "item_vec" if kind == "package2vec" else "exp_word_topic"
    assert torch.equal(getattr(a, buf), getattr(b, buf)) and getattr(a, buf).abs().sum() > 0


def test_fit_packages_only_where_the_model_has_it():
    assert not fit_packages(build_model(spec("br")), None, M, seed=0)  # BR: nothing to fit, no packages needed
    with pytest.raises(ValueError, match="needs the training packages"):
        fit_packages(build_model(spec("lda")), None, M, seed=0)


def test_stopped_early_counts_epochs_without_a_better_val_f1():
    assert not stopped_early(0, -1, 2)  # nothing trained yet
    assert not stopped_early(3, 1, 2)  # epoch 2 did not improve on epoch 1: one epoch
    assert stopped_early(4, 1, 2)  # epochs 2 and 3 did not: two
    assert not stopped_early(5, 4, 2)  # the last epoch was the best
    assert not stopped_early(10, 0, 0)  # 0: no early stopping
