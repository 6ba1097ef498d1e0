"""The contract every baseline shares with DPR (``dpr_dist/models/baselines/base.py``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from dpr_dist.models.baselines import BASELINES, PackageBaseline, build_baseline, check_packages
from dpr_dist.models.ncf import NCF
from dpr_dist.models.variants import build_model

TRAINABLE = ["package2vec", "lda", "br", "dam"]
ALL = sorted(BASELINES)
#: Size of the package embedding per model, as a function of the config.
EMB_DIM = {
    "nn": lambda c: c.mlp_out + c.lstm_hidden,
    "package2vec": lambda c: c.drug_dim,
    "lda": lambda c: c.drug_dim,
    "br": lambda c: c.drug_dim,
    "dam": lambda c: c.drug_dim,
}
#: Parameters with a zero BPR gradient: the scoring MLP's output bias cancels in s_i - s_j.
ZERO_GRAD = {"package2vec": {"predict.2.bias"}, "lda": {"predict.2.bias"}, "br": set(),
             "dam": {"predict.2.bias"}}


@pytest.mark.parametrize("name", ALL)
def test_shapes(small_cfg, make_baseline, two_patients, name):
    m = make_baseline(name, small_cfg)
    assert isinstance(m, PackageBaseline) and m.name == name and m.variant.name == name
    u = m.encode(two_patients.patients)
    assert u.shape == (2, small_cfg.mlp_out + small_cfg.lstm_hidden)
    g = m.package_embedding(u, two_patients.graphs, two_patients.owner)
    assert g.shape == (4, EMB_DIM[name](small_cfg)) and torch.isfinite(g).all()
    s = m.score(u, two_patients.graphs, two_patients.owner)
    assert s.shape == (4,) and torch.isfinite(s).all()
    one = two_patients.graphs.get_example(0)  # a single Data (no batch vector)
    assert m.score(u[:1], one, torch.zeros(1, dtype=torch.long)).shape == (1,)


@pytest.mark.parametrize("name", TRAINABLE)
def test_loss_decreases_on_toy_problem(small_cfg, make_baseline, two_patients, name):
    m = make_baseline(name, small_cfg)
    assert m.trainable
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        loss, stats = m(two_patients.patients, two_patients.graphs, two_patients.owner, 1)
        assert set(stats) >= {"bpr", "pair_acc"} and not stats["bpr"].requires_grad
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0] and losses[-1] < 0.1
    _, stats = m.loss(two_patients.patients, two_patients.graphs, two_patients.owner, 1)
    assert float(stats["pair_acc"]) == 1.0


@pytest.mark.parametrize("name", TRAINABLE)
def test_gradients_reach_trained_parameters(small_cfg, make_baseline, two_patients, name):
    m = make_baseline(name, small_cfg)
    loss, _ = m.loss(two_patients.patients, two_patients.graphs, two_patients.owner, 1)
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())  # every parameter takes part (DDP)
    zero = {n for n, p in m.named_parameters() if p.grad.abs().max() < 1e-9}
    assert zero == ZERO_GRAD[name]
    assert all(not b.requires_grad for b in m.buffers())  # fitted tensors stay fixed


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_preserves_scores(small_cfg, make_baseline, two_patients, name):
    m = make_baseline(name, small_cfg, seed=0).eval()
    other = make_baseline(name, small_cfg, seed=1, fit=False).eval()
    other.load_state_dict(m.state_dict())
    with torch.no_grad():
        u = m.encode(two_patients.patients)
        assert torch.equal(u, other.encode(two_patients.patients))
        a = m.score(u, two_patients.graphs, two_patients.owner)
        b = other.score(u, two_patients.graphs, two_patients.owner)
    assert torch.equal(a, b)
    if name != "nn":  # a differently seeded model scores differently: the state dict carried it
        fresh = make_baseline(name, small_cfg, seed=1).eval()
        with torch.no_grad():
            assert not torch.equal(a, fresh.score(u, two_patients.graphs, two_patients.owner))


@pytest.mark.parametrize("name", ALL)
def test_load_pretrained_copies_encoder_and_drugs(small_cfg, make_baseline, two_patients, name):
    torch.manual_seed(5)
    ncf = NCF(small_cfg, 10, 12, 10).eval()
    m = make_baseline(name, small_cfg).eval()
    m.load_pretrained(ncf)
    with torch.no_grad():
        assert torch.equal(m.encode(two_patients.patients), ncf.encode(two_patients.patients))
    if hasattr(m, "drug_emb"):
        assert torch.equal(m.drug_emb.weight, ncf.drug_emb.weight)
    bad = NCF(replace(small_cfg, lstm_hidden=small_cfg.lstm_hidden + 1), 10, 12, 10)
    with pytest.raises(ValueError, match="load_pretrained: encoder"):
        m.load_pretrained(bad)


@pytest.mark.parametrize("name", ["br", "dam"])
def test_load_pretrained_checks_drug_embeddings(small_cfg, make_baseline, name):
    m = make_baseline(name, small_cfg)
    with pytest.raises(ValueError, match="drug_emb.weight is \\(10, 16\\) here, \\(11, 16\\)"):
        m.load_pretrained(NCF(small_cfg, 11, 12, 10))


@pytest.mark.parametrize("name", TRAINABLE)
def test_loss_rejects_bad_layout(small_cfg, make_baseline, two_patients, name):
    m = make_baseline(name, small_cfg)
    p, g = two_patients.patients, two_patients.graphs
    with pytest.raises(ValueError, match="num_negatives must be >= 1"):
        m.loss(p, g, two_patients.owner, 0)
    with pytest.raises(ValueError, match="expected 2 patients x \\(1 \\+ 2\\) = 6 graphs, got 4"):
        m.loss(p, g, two_patients.owner, 2)
    with pytest.raises(ValueError, match="patient-major"):
        m.loss(p, g, torch.tensor([0, 1, 0, 1]), 1)


@pytest.mark.parametrize("name", ALL)
def test_bad_graphs_name_the_field(small_cfg, make_baseline, two_patients, name):
    m = make_baseline(name, small_cfg)
    u = m.encode(two_patients.patients)
    with pytest.raises(ValueError, match="owner must be \\[4\\]"):
        m.score(u, two_patients.graphs, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="owner \\(patient row per graph\\): row 3"):
        m.score(u, two_patients.graphs, torch.tensor([0, 0, 1, 2]))
    bad = Batch.from_data_list(two_patients.graphs.to_data_list())
    bad.drug = bad.drug.clone()
    bad.drug[5] = 10
    with pytest.raises(ValueError, match="graphs.drug \\(node\\): row 5 holds an id outside \\[0, 10\\)"):
        m.score(u, bad, two_patients.owner)


def test_build_model_dispatches_baselines(small_cfg):
    for name, cls in BASELINES.items():
        m = build_model(replace(small_cfg, name=name), 10, 12, 10)
        assert type(m) is cls and m.name == name
        assert type(build_baseline(replace(small_cfg, name=name), 10, 12, 10)) is cls
    assert set(BASELINES) == {"nn", "package2vec", "lda", "br", "dam"}
    with pytest.raises(ValueError, match="'nope' is not ncf, a DPR variant"):
        build_model(replace(small_cfg, name="nope"), 10, 12, 10)
    with pytest.raises(ValueError, match="build_baseline: model.name 'ag'"):
        build_baseline(replace(small_cfg, name="ag"), 10, 12, 10)
    with pytest.raises(ValueError, match="num_drugs must be >= 1"):
        build_baseline(replace(small_cfg, name="br"), 0, 12, 10)


def test_check_packages_names_the_package():
    assert [p.dtype for p in check_packages([np.array([1, 2], np.int32)], 5, "f")] == [np.int64]
    with pytest.raises(ValueError, match="f: no packages"):
        check_packages([], 5, "f")
    with pytest.raises(ValueError, match="f: package 1 must be a non-empty"):
        check_packages([np.array([1]), np.array([], np.int64)], 5, "f")
    with pytest.raises(ValueError, match="f: package 0 has drug ids of dtype float64"):
        check_packages([np.array([1.0])], 5, "f")
    with pytest.raises(ValueError, match="f: package 2 has a drug id outside \\[0, 5\\)"):
        check_packages([np.array([1]), np.array([4]), np.array([0, 5])], 5, "f")
