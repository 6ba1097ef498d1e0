"""Fused per-edge work of the DPR fast path: custom autograd functions over edge chunks.

* :func:`gru_messages` -- eq. 12: ``sum_v GRUCell(e^_vu * W1 h_v, h_u)`` from per-row
  products (``W_ih W1 h`` and ``W_hh h + b_hh``), gates and elementwise work per edge;
* :func:`context_factor` -- eq. 10: ``tanh(a^T MLP([d^_u || d^_v]))`` from the per-row
  halves of the MLP's first layer, with ``a`` folded into its last layer;

Edges run in chunks (:data:`CHUNK`) whose intermediates stay in cache; backward passes
recompute a chunk instead of storing ``[E, *]`` tensors. Nothing synchronises with the host
(shapes only), so the same code runs on CUDA; per-edge work runs in float32 (float64 for
a float64 model), also under autocast.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

#: Edges per chunk of the per-edge kernels: a chunk's intermediates stay in cache on a CPU;
#: on a GPU one launch covers many edges.
CHUNK = {"cpu": 4096, "cuda": 1 << 18}


def _chunk(device: torch.device) -> int:
    return CHUNK.get(device.type, CHUNK["cuda"])


def _gates(e: Tensor, p_in: Tensor, hid: Tensor, b_ih: Tensor, src: Tensor, dst: Tensor):
    """GRUCell gates of a chunk of edges (eq. 12).

    ``p_in`` ``[R', 3D]`` holds ``W_ih W1 h`` per row of ``v``; ``hid`` ``[R, 4D]`` holds
    ``[W_hh h + b_hh || h]`` per row of ``u``. Returns ``pin`` ``[c, 3D]`` (the gathered
    ``p_in``), ``hh`` ``[c, 4D]`` (the gathered ``hid``), ``r``, ``z``, ``n`` ``[c, D]``.
    """
    dim = hid.size(1) // 4
    pin = p_in.index_select(0, src)
    gi = torch.addcmul(b_ih, e.unsqueeze(1), pin)  # W_ih (e^ W1 h_v) + b_ih
    hh = hid.index_select(0, dst)
    rz = gi[:, : 2 * dim].add_(hh[:, : 2 * dim]).sigmoid_()
    n = torch.addcmul(gi[:, 2 * dim:], rz[:, :dim], hh[:, 2 * dim: 3 * dim]).tanh_()
    return pin, hh, rz[:, :dim], rz[:, dim:], n


def _gru_rows(e: Tensor, p_in: Tensor, hid: Tensor, b_ih: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    """GRUCell messages ``(1 - z) n + z h_u`` ``[c, D]`` of a chunk of edges (see :func:`_gates`)."""
    _, hh, _, z, n = _gates(e, p_in, hid, b_ih, src, dst)
    return torch.lerp(n, hh[:, 3 * z.size(1):], z)


def _gru_grad_rows(e: Tensor, p_in: Tensor, hid: Tensor, b_ih: Tensor, dmsg: Tensor, src: Tensor, dst: Tensor):
    """Gradients of a chunk of :func:`_gru_rows` for the message gradients ``dmsg`` ``[c, D]``.

    Returns:
        ``de`` ``[c]``; ``e * dgi`` ``[c, 3D]`` (to add at the ``src`` rows of ``p_in``);
        ``dgi`` summed over the chunk ``[3D]`` (``b_ih``); ``[c, 4D]`` (to add at the
        ``dst`` rows of ``hid``), where ``dgi`` is the gradient at ``W_ih x + b_ih``.
    """
    pin, hh, r, z, n = _gates(e, p_in, hid, b_ih, src, dst)
    dim = r.size(1)
    ghn = hh[:, 2 * dim: 3 * dim]
    dhid = torch.empty_like(hh)
    dgi = dhid[:, : 3 * dim]
    dan = dgi[:, 2 * dim:]  # at the pre-tanh a_n = gi_n + r * gh_n: dmsg (1 - z) (1 - n^2)
    t = torch.addcmul(dmsg, dmsg, z, value=-1)
    torch.addcmul(t, t, n * n, value=-1, out=dan)
    torch.mul(dan * ghn, torch.addcmul(r, r, r, value=-1), out=dgi[:, :dim])  # through r
    q = (hh[:, 3 * dim:] - n).mul_(dmsg)
    torch.mul(q, torch.addcmul(z, z, z, value=-1), out=dgi[:, dim: 2 * dim])  # through z
    de = (dgi * pin).sum(1)
    dp_rows = dgi * e.unsqueeze(1)
    db = dgi.sum(0)
    torch.mul(dmsg, z, out=dhid[:, 3 * dim:])  # through the z h_u term
    dan.mul_(r)  # the hidden side of a_n is gated by r
    return de, dp_rows, db, dhid


def _context_pre(a_u: Tensor, b_v: Tensor, iu: Tensor, iv: Tensor) -> Tensor:
    """``relu(a_u[iu] + b_v[iv])`` ``[c, H]``: the context MLP's hidden layer (eq. 10)."""
    return a_u.index_select(0, iu).add_(b_v.index_select(0, iv)).relu_()


def _context_rows(a_u: Tensor, b_v: Tensor, w: Tensor, b: Tensor, iu: Tensor, iv: Tensor) -> Tensor:
    """``tanh(relu(a_u[iu] + b_v[iv]) . w + b)`` ``[c]`` (eq. 10)."""
    return torch.addmv(b, _context_pre(a_u, b_v, iu, iv), w).tanh_()


def _context_grad_rows(a_u: Tensor, b_v: Tensor, w: Tensor, dz: Tensor, iu: Tensor, iv: Tensor):
    """For ``dz`` = gradient at the pre-tanh value ``[c]``: ``[H]`` (``w``) and ``[c, H]`` (rows)."""
    act = _context_pre(a_u, b_v, iu, iv)
    return torch.mv(act.t(), dz), torch.outer(dz, w).mul_(act > 0)


# ---------------------------------------------------------------- compiled variants (opt-in)
def _gru_rows_fused(e, p_in, hid, b_ih, src, dst):
    """:func:`_gru_rows` without in-place ops, for ``torch.compile`` (one fused loop)."""
    dim = hid.size(1) // 4
    gi = b_ih + e.unsqueeze(1) * p_in[src]
    hh = hid[dst]
    r = torch.sigmoid(gi[:, :dim] + hh[:, :dim])
    z = torch.sigmoid(gi[:, dim: 2 * dim] + hh[:, dim: 2 * dim])
    n = torch.tanh(gi[:, 2 * dim:] + r * hh[:, 2 * dim: 3 * dim])
    return n + z * (hh[:, 3 * dim:] - n)


def _gru_grad_rows_fused(e, p_in, hid, b_ih, dmsg, src, dst):
    """:func:`_gru_grad_rows` without in-place ops, for ``torch.compile``."""
    dim = hid.size(1) // 4
    pin = p_in[src]
    gi = b_ih + e.unsqueeze(1) * pin
    hh = hid[dst]
    r = torch.sigmoid(gi[:, :dim] + hh[:, :dim])
    z = torch.sigmoid(gi[:, dim: 2 * dim] + hh[:, dim: 2 * dim])
    ghn = hh[:, 2 * dim: 3 * dim]
    n = torch.tanh(gi[:, 2 * dim:] + r * ghn)
    dan = dmsg * (1 - z) * (1 - n * n)
    dar = dan * ghn * r * (1 - r)
    daz = dmsg * (hh[:, 3 * dim:] - n) * z * (1 - z)
    dgi = torch.cat([dar, daz, dan], dim=1)
    return ((dgi * pin).sum(1), dgi * e.unsqueeze(1), dgi.sum(0),
            torch.cat([dar, daz, dan * r, dmsg * z], dim=1))


def _context_rows_fused(a_u, b_v, w, b, iu, iv):
    """:func:`_context_rows` without in-place ops, for ``torch.compile``."""
    return torch.tanh((torch.relu(a_u[iu] + b_v[iv]) * w).sum(1) + b)


def _context_grad_rows_fused(a_u, b_v, w, dz, iu, iv):
    """:func:`_context_grad_rows` without in-place ops, for ``torch.compile``."""
    pre = a_u[iu] + b_v[iv]
    return (torch.relu(pre) * dz.unsqueeze(1)).sum(0), (pre > 0) * (dz.unsqueeze(1) * w)


_EAGER = {"gru": _gru_rows, "gru_grad": _gru_grad_rows, "context": _context_rows,
          "context_grad": _context_grad_rows}
_FUSED = {"gru": _gru_rows_fused, "gru_grad": _gru_grad_rows_fused, "context": _context_rows_fused,
          "context_grad": _context_grad_rows_fused}
_compiled: dict[str, Any] = {}  # torch.compile'd _FUSED functions of this process (built once)


def compile_enabled(device: torch.device) -> bool:
    """Whether the per-edge functions run ``torch.compile``'d on ``device``: on CPUs when the
    environment sets ``DPR_FAST_COMPILE=1`` (needs a C++ compiler; compiling takes tens of
    seconds once per process, cached on disk by Inductor for later ones)."""
    return device.type == "cpu" and os.environ.get("DPR_FAST_COMPILE", "0") == "1" and "failed" not in _compiled


def _rows(name: str, device: torch.device):
    """The per-chunk function ``name``: compiled (opt-in, see :func:`compile_enabled`) or eager."""
    if not compile_enabled(device):
        return _EAGER[name]
    if name not in _compiled:
        _compiled[name] = torch.compile(_FUSED[name], dynamic=True, fullgraph=True)
    fn = _compiled[name]

    def run(*args):
        try:
            return fn(*args)
        except Exception as exc:  # no compiler, or an Inductor failure: stay correct, run eager
            _compiled["failed"] = True
            log.warning("fast path: torch.compile failed (%s); the per-edge kernels run eagerly",
                        type(exc).__name__)
            return _EAGER[name](*args)

    return run


class GRUMessages(torch.autograd.Function):
    """``M = sum_{e: seg(e) = i} GRUCell(e^_e * W1 h_src(e), h_dst(e))`` into row ``i`` (eq. 12).

    The GRU input ``e^ * W1 h_v`` enters only through ``W_ih W1 h_v`` and the hidden state
    through ``W_hh h_u + b_hh``: both are given per table row (per drug in layer 1, per node
    after), so only gates and elementwise work remain per edge. Edges run in chunks that
    stay in cache; the backward pass recomputes a chunk's gates instead of storing
    ``[E, 3D]`` tensors.

    Inputs: ``e`` ``[E]``; ``p_in`` ``[R_v, 3D]``; ``hid`` ``[R_u, 4D]`` (see
    :func:`_gru_rows`); ``b_ih`` ``[3D]``; ``src``/``dst``/``seg`` ``[E]`` rows of ``p_in``,
    ``hid`` and the output; ``num_out``. Output ``[num_out, D]``.
    """

    @staticmethod
    def forward(ctx, e, p_in, hid, b_ih, src, dst, seg, num_out):  # noqa: D102
        out = hid.new_zeros(num_out, hid.size(1) // 4)
        step, rows = _chunk(e.device), _rows("gru", e.device)
        for s in range(0, src.numel(), step):
            sl = slice(s, s + step)
            out.index_add_(0, seg[sl], rows(e[sl], p_in, hid, b_ih, src[sl], dst[sl]))
        ctx.save_for_backward(e, p_in, hid, b_ih, src, dst, seg)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):  # noqa: D102
        e, p_in, hid, b_ih, src, dst, seg = ctx.saved_tensors
        de, dp, dhid, db = torch.empty_like(e), torch.zeros_like(p_in), torch.zeros_like(hid), torch.zeros_like(b_ih)
        dout = dout.contiguous()
        step, rows = _chunk(e.device), _rows("gru_grad", e.device)
        for s in range(0, src.numel(), step):
            sl = slice(s, s + step)
            de[sl], dp_rows, db_c, dhid_rows = rows(e[sl], p_in, hid, b_ih, dout[seg[sl]], src[sl], dst[sl])
            db += db_c
            dp.index_add_(0, src[sl], dp_rows)
            dhid.index_add_(0, dst[sl], dhid_rows)
        return de, dp, dhid, db, None, None, None, None


class ContextFactor(torch.autograd.Function):
    """``c = tanh(w . relu(a_u[iu] + b_v[iv]) + b)`` ``[T]``: eq. 10 with the MLP's last
    layer folded into ``a`` (``w = a^T W2``, ``b = a^T b2``), in chunks, recomputed backward.

    Inputs: ``a_u`` ``[R, H]`` (with the first layer's bias), ``b_v`` ``[R, H]``, ``w`` ``[H]``,
    ``b`` ``[1]``, ``iu``/``iv`` ``[T]`` rows.
    """

    @staticmethod
    def forward(ctx, a_u, b_v, w, b, iu, iv):  # noqa: D102
        c = a_u.new_empty(iu.numel())
        step, rows = _chunk(a_u.device), _rows("context", a_u.device)
        for s in range(0, iu.numel(), step):
            sl = slice(s, s + step)
            c[sl] = rows(a_u, b_v, w, b, iu[sl], iv[sl])
        ctx.save_for_backward(a_u, b_v, w, iu, iv, c)
        return c

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dc):  # noqa: D102
        a_u, b_v, w, iu, iv, c = ctx.saved_tensors
        dz = dc * (1 - c * c)
        da, db_v, dw = torch.zeros_like(a_u), torch.zeros_like(b_v), torch.zeros_like(w)
        step, rows = _chunk(a_u.device), _rows("context_grad", a_u.device)
        for s in range(0, iu.numel(), step):
            sl = slice(s, s + step)
            dw_c, dpre = rows(a_u, b_v, w, dz[sl], iu[sl], iv[sl])
            dw += dw_c
            da.index_add_(0, iu[sl], dpre)
            db_v.index_add_(0, iv[sl], dpre)
        return da, db_v, dw, dz.sum().reshape(1), None, None


def kernel_dtype(*xs: Tensor) -> torch.dtype:
    """float64 if any input is, else float32 (per-edge kernels never run in half precision)."""
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def gru_messages(e: Tensor, p_in: Tensor, h_hid: Tensor, h_prev: Tensor, b_ih: Tensor, src: Tensor,
                 dst: Tensor, seg: Tensor, num_out: int) -> Tensor:
    """:class:`GRUMessages` in float32 (float64 for a float64 model; also under autocast).

    Args:
        e: ``[E]`` edge weights ``e^``.
        p_in: ``[R_v, 3D]`` ``W_ih W1 h`` per row of the source table.
        h_hid: ``[R_u, 3D]`` ``W_hh h + b_hh`` per row of the target table.
        h_prev: ``[R_u, D]`` ``h`` per row of the target table.
        b_ih: ``[3D]``.
        src, dst: ``[E]`` table rows of each edge's ``v`` and ``u``.
        seg: ``[E]`` output row of each edge.
        num_out: Output rows.

    Returns:
        ``[num_out, D]``.
    """
    f = kernel_dtype(p_in, h_hid, h_prev)
    hid = torch.cat([h_hid.to(f), h_prev.to(f)], dim=1)
    return GRUMessages.apply(e.to(f), p_in.to(f), hid, b_ih.to(f), src, dst, seg, num_out)


def context_factor(a_u: Tensor, b_v: Tensor, w: Tensor, b: Tensor, iu: Tensor, iv: Tensor) -> Tensor:
    """:class:`ContextFactor` in float32 (float64 for a float64 model; also under autocast)."""
    f = kernel_dtype(a_u, b_v, w)
    return ContextFactor.apply(a_u.to(f), b_v.to(f), w.to(f), b.to(f), iu, iv)
