"""Per-edge kernels of the fast path: hand-written backward passes and the GRUCell they fuse."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dpr_dist.models import fast_kernels


@pytest.fixture(params=[4096, 3], ids=["one_chunk", "many_chunks"])
def chunk(request, monkeypatch):
    monkeypatch.setitem(fast_kernels.CHUNK, "cpu", request.param)


def _rand(*shape, g):
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def test_gru_messages_is_a_sum_of_grucell_steps(chunk):
    """``sum_{e: seg(e) = i} GRUCell(e_e * x_src(e), h_dst(e))`` with ``W_ih x`` given per row."""
    g = torch.Generator().manual_seed(1)
    cell = torch.nn.GRUCell(2, 2).double()
    e, x, h = _rand(11, g=g), _rand(4, 2, g=g), _rand(5, 2, g=g)
    src, dst = torch.randint(0, 4, (11,), generator=g), torch.randint(0, 5, (11,), generator=g)
    seg = torch.randint(0, 3, (11,), generator=g)
    expect = torch.zeros(3, 2, dtype=torch.float64).index_add_(0, seg, cell(e.unsqueeze(1) * x[src], h[dst]))
    with torch.no_grad():
        got = fast_kernels.gru_messages(e, x @ cell.weight_ih.T, F.linear(h, cell.weight_hh, cell.bias_hh), h,
                                        cell.bias_ih, src, dst, seg, 3)
    torch.testing.assert_close(got, expect)


def test_gru_messages_gradients(chunk):
    g = torch.Generator().manual_seed(2)
    inputs = [t.requires_grad_() for t in (_rand(11, g=g), _rand(4, 6, g=g), _rand(5, 6, g=g), _rand(5, 2, g=g),
                                           _rand(6, g=g))]
    src, dst = torch.randint(0, 4, (11,), generator=g), torch.randint(0, 5, (11,), generator=g)
    seg = torch.randint(0, 3, (11,), generator=g)

    def f(e, p_in, h_hid, h_prev, b_ih):
        return fast_kernels.gru_messages(e, p_in, h_hid, h_prev, b_ih, src, dst, seg, 3)

    assert torch.autograd.gradcheck(f, inputs)


def test_context_factor_values_and_gradients(chunk):
    g = torch.Generator().manual_seed(3)
    a_u, b_v, w, b = (t.requires_grad_() for t in (_rand(4, 5, g=g), _rand(4, 5, g=g), _rand(5, g=g), _rand(1, g=g)))
    iu, iv = torch.randint(0, 4, (9,), generator=g), torch.randint(0, 4, (9,), generator=g)
    expect = torch.tanh(torch.relu(a_u[iu] + b_v[iv]) @ w + b)  # eq. 10, last layer folded into w
    torch.testing.assert_close(fast_kernels.context_factor(a_u, b_v, w, b, iu, iv), expect)

    def f(a_u, b_v, w, b):
        return fast_kernels.context_factor(a_u, b_v, w, b, iu, iv)

    assert torch.autograd.gradcheck(f, (a_u, b_v, w, b))


def test_kernels_compute_in_float32_under_half_inputs():
    assert fast_kernels.kernel_dtype(torch.zeros(1, dtype=torch.bfloat16)) == torch.float32
    assert fast_kernels.kernel_dtype(torch.zeros(1, dtype=torch.float64)) == torch.float64
