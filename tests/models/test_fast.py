"""The fast path computes the same function as the reference DPR code (issue 8)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from dpr_dist.config import ModelConfig, load_config
from dpr_dist.models import fast, fast_kernels
from dpr_dist.models.batch import PatientBatch
from dpr_dist.models.dpr import DPR
from dpr_dist.models.variants import VARIANTS
from fastcheck import assert_same, cast, dpr, errors, run, with_duplicates

ALL = sorted(VARIANTS)


@pytest.mark.parametrize("layers,chunk", [(1, 4096), (2, 7), (3, 4096)])
@pytest.mark.parametrize("name", ALL)
def test_same_function_float64(small_cfg, toy_factory, name, layers, chunk, monkeypatch):
    """In float64 the fast path equals the reference to rounding: outputs and all gradients
    (with 2 layers, the per-edge kernels run in chunks of 7 edges)."""
    monkeypatch.setitem(fast_kernels.CHUNK, "cpu", chunk)
    toy = toy_factory(batch=4, num_negatives=3, seed=layers, num_drugs=15, sizes=(1, 8))
    graphs = with_duplicates(toy)
    m = dpr(small_cfg, toy, name, layers, seed=layers, dtype=torch.float64)
    patients, graphs = cast(toy, graphs, torch.float64)
    ref = run(m, patients, graphs, toy.owner, toy.num_negatives, False)
    out = run(m, patients, graphs, toy.owner, toy.num_negatives, True)
    assert_same(out, ref, 1e-10, tied_pairs=1 / (4 * 3))  # patient 0's positive is also its negative


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("name", ALL)
def test_mean_aggregation_same_function(small_cfg, toy_factory, name, layers):
    """``model.aggr: mean``: the fast path (the summed messages divided by the in-degree)
    equals the reference (PyG's mean aggregation) in float64, outputs and gradients."""
    toy = toy_factory(batch=4, num_negatives=3, seed=layers, num_drugs=15, sizes=(1, 8))
    graphs = with_duplicates(toy)
    m = dpr(small_cfg, toy, name, layers, seed=layers, dtype=torch.float64, aggr="mean")
    patients, graphs = cast(toy, graphs, torch.float64)
    ref = run(m, patients, graphs, toy.owner, toy.num_negatives, False)
    out = run(m, patients, graphs, toy.owner, toy.num_negatives, True)
    assert_same(out, ref, 1e-10, tied_pairs=1 / (4 * 3))
    summed = run(dpr(small_cfg, toy, name, layers, seed=layers, dtype=torch.float64), patients, graphs,
                 toy.owner, toy.num_negatives, True)
    assert not torch.allclose(summed[0], out[0])  # the loss differs from the sum's


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("name", ALL)
def test_same_function_float32(small_cfg, toy_factory, name, layers):
    """In float32 the fast path agrees with the reference to 1e-5 (relative) in outputs and
    gradients; where float32 rounding makes the reference itself less accurate than that
    (deep GNNs amplify it), the fast path is at least as close to the exact (float64)
    values as the reference is, give or take a factor of 3 (float32 rounding differs between
    CPUs: vector widths, BLAS kernels)."""
    toy = toy_factory(batch=4, num_negatives=3, seed=10 + layers, num_drugs=15, sizes=(2, 9))
    m = dpr(small_cfg, toy, name, layers, seed=layers, spread=0.02)
    ref = run(m, toy.patients, toy.graphs, toy.owner, toy.num_negatives, False)
    out = run(m, toy.patients, toy.graphs, toy.owner, toy.num_negatives, True)
    truth = run(m.double(), *cast(toy, toy.graphs, torch.float64), toy.owner, toy.num_negatives, False)
    for e_fast, e_direct, e_ref in zip(errors(out, truth), errors(out, ref), errors(ref, truth)):
        assert e_direct < 1e-5 or e_fast <= 3 * max(e_ref, 1e-5), (e_fast, e_direct, e_ref)
    assert max(errors(out, ref)[:3]) < 1e-5  # loss, embeddings and scores


@pytest.mark.parametrize("name", ALL)
def test_no_edges_and_single_nodes(small_cfg, toy, name):
    """Graphs without edges (and of one node): same outputs, every parameter gets a gradient."""
    k = toy.num_negatives
    sizes = [1, 2, 1] * 3
    packages = [np.arange(n) + i for i, n in enumerate(sizes)]
    rel = np.full((toy.num_drugs, toy.num_drugs), -1, dtype=np.int8)
    from dpr_dist.models.batch import graphs_from_packages

    graphs = graphs_from_packages(packages, rel, np.zeros((toy.num_drugs, toy.num_drugs)), 0.5)
    assert graphs.edge_index.size(1) == 0
    m = dpr(small_cfg, toy, name, 2)
    ref = run(m, toy.patients, graphs, toy.owner, k, False)
    out = run(m, toy.patients, graphs, toy.owner, k, True)
    assert_same(out, ref, 1e-5)
    assert all(p.grad is not None for p in m.parameters())


def test_fast_encoder_equals_the_packed_lstm(small_cfg, toy, make_patients):
    m = dpr(small_cfg, toy, "wg", 1)
    p = make_patients(5, toy.num_doc_words, toy.num_chars, 9, (0, 3), seed=3)
    torch.testing.assert_close(fast.encode(m, p), m.encode(p))
    empty = PatientBatch(p.doc, p.note[:, :0], torch.zeros(5, dtype=torch.long))  # no notes at all
    torch.testing.assert_close(fast.encode(m, empty), m.encode(empty))
    bad = PatientBatch(p.doc, p.note, p.note_len.clone().fill_(20))
    with pytest.raises(ValueError, match="note_len: row 0"):
        fast.encode(m, bad)


def test_config_switch(toy):
    assert ModelConfig().fast is True
    cfg = load_config(None, ["model.fast=false", "model.name=wg"]).model
    m = DPR(cfg, toy.num_drugs, toy.num_doc_words, toy.num_chars)
    assert m.fast is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_under_ddp(small_cfg, toy):
    """The fast path inside DistributedDataParallel (one gloo rank) gives the plain gradients."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    m = dpr(small_cfg, toy, "wg", 2)
    plain = run(m, toy.patients, toy.graphs, toy.owner, toy.num_negatives, True)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(m)
        m.zero_grad()
        loss, _ = ddp(toy.patients, toy.graphs, toy.owner, toy.num_negatives)
        loss.backward()
    finally:
        dist.destroy_process_group()
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, plain[4][n])


def test_autocast_keeps_edge_kernels_in_float32(small_cfg, toy):
    m = dpr(small_cfg, toy, "wg", 1)
    ref, _ = m.loss(toy.patients, toy.graphs, toy.owner, toy.num_negatives)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = m.loss(toy.patients, toy.graphs, toy.owner, toy.num_negatives)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert abs(float(loss) - float(ref)) < 0.05 * abs(float(ref)) + 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["wg", "ag", "gnn"])
def test_cuda_same_function_without_host_sync(small_cfg, toy, name):
    """On CUDA: the CPU reference's numbers, and no host synchronisation in the hot path."""
    m = dpr(small_cfg, toy, name, 2)
    ref = run(m, toy.patients, toy.graphs, toy.owner, toy.num_negatives, False)
    m = m.cuda()
    plan = m.plan(toy.graphs, toy.owner, 3, toy.num_negatives).pin_memory().to("cuda", non_blocking=True)
    u = m.encode(toy.patients.to("cuda"))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        s = fast.score(m, u, plan)
        s.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(s.cpu(), ref[3], rtol=1e-4, atol=1e-5)
