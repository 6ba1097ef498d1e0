"""The GNN layers and readout against explicit per-edge / per-node loops of the equations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dpr_dist.models.layers import MLP, AGConv, GatedReadout, WGConv, kaiming_init, l2_penalty

# A small graph: node 3 has no incoming edge, node 0 has two.
EDGES = torch.tensor([[1, 2, 0, 1, 3], [0, 0, 1, 2, 1]])


def test_mlp_is_linear_relu_linear():
    mlp = MLP(5, 7, 3)
    assert [type(m) for m in mlp] == [nn.Linear, nn.ReLU, nn.Linear]
    assert (mlp[0].in_features, mlp[0].out_features, mlp[2].out_features) == (5, 7, 3)
    assert mlp(torch.randn(4, 2, 5)).shape == (4, 2, 3)


def test_kaiming_init_weights_biases_and_padding():
    torch.manual_seed(0)
    mod = nn.ModuleDict(
        {"lin": nn.Linear(50, 40), "emb": nn.Embedding(30, 20, padding_idx=0), "gru": nn.GRUCell(8, 8)}
    )
    for p in mod.parameters():
        nn.init.constant_(p, 3.0)
    kaiming_init(mod)
    bound = math.sqrt(2.0) * math.sqrt(3.0 / 50)  # kaiming_uniform_, ReLU gain, fan_in = 50
    w = mod["lin"].weight
    assert w.abs().max() <= bound + 1e-6 and w.std() > bound / 4
    assert torch.all(mod["lin"].bias == 0)
    assert torch.all(mod["gru"].bias_ih == 0) and torch.all(mod["gru"].bias_hh == 0)
    assert torch.all(mod["emb"].weight[0] == 0) and mod["emb"].weight[1:].abs().sum() > 0
    assert mod["emb"].weight.abs().max() <= math.sqrt(2.0) * math.sqrt(3.0 / 20) + 1e-6


def test_l2_penalty_is_sum_of_squares():
    a, b = torch.tensor([1.0, -2.0]), torch.tensor([[3.0]])
    assert l2_penalty([a, b]).item() == pytest.approx(14.0)
    with pytest.raises(ValueError):
        l2_penalty([])


def _aggregate(messages: list[torch.Tensor], aggr: str, dim: int) -> torch.Tensor:
    """M_u from the messages into u: their sum (eqs. 12, 19) or their mean; 0 without any."""
    if not messages:
        return torch.zeros(dim)
    total = torch.stack(messages).sum(0)
    return total / len(messages) if aggr == "mean" else total


@pytest.mark.parametrize("aggr", ["sum", "mean"])
def test_wgconv_matches_equations_11_to_13(aggr):
    torch.manual_seed(0)
    conv = WGConv(dim=6, hidden=10, aggr=aggr)
    kaiming_init(conv)
    h = torch.randn(4, 6)
    w = torch.tensor([0.5, -1.0, 1.0, 0.02, -0.3])
    out = conv(h, EDGES, w)
    expected = []
    for u in range(4):
        into = []
        for k in range(EDGES.size(1)):
            v, tgt = EDGES[:, k].tolist()
            if tgt == u:
                m_vu = conv.lin1.weight @ h[v]  # eq. 11
                into.append(conv.gru((w[k] * m_vu)[None], h[u][None])[0])  # eq. 12
        expected.append(conv.mlp(conv.lin0.weight @ h[u] + _aggregate(into, aggr, 6)))  # eq. 13
    torch.testing.assert_close(out, torch.stack(expected))
    # Node 3 has no incoming edge: M_u = 0.
    torch.testing.assert_close(out[3], conv.mlp(conv.lin0(h[3])))


def test_wgconv_edge_weight_matters():
    torch.manual_seed(0)
    conv = WGConv(dim=6, hidden=10)
    h = torch.randn(4, 6)
    a = conv(h, EDGES, torch.ones(5))
    b = conv(h, EDGES, -torch.ones(5))
    assert not torch.allclose(a[:3], b[:3])
    torch.testing.assert_close(a[3], b[3])


@pytest.mark.parametrize("aggr", ["sum", "mean"])
def test_agconv_matches_equations_18_to_20(aggr):
    torch.manual_seed(0)
    conv = AGConv(dim=6, edge_dim=4, hidden=10, aggr=aggr)
    h = torch.randn(4, 6)
    e = torch.randn(5, 4)
    out = conv(h, EDGES, e)
    expected = []
    for u in range(4):
        into = [conv.lin1.weight @ e[k] for k in range(EDGES.size(1)) if EDGES[1, k] == u]  # eq. 18
        expected.append(conv.mlp(conv.lin0.weight @ h[u] + _aggregate(into, aggr, 6)))  # eqs. 19-20
    torch.testing.assert_close(out, torch.stack(expected))


@pytest.mark.parametrize("make", [lambda aggr: WGConv(6, 10, aggr), lambda aggr: AGConv(6, 6, 10, aggr)])
def test_mean_differs_from_sum_only_where_several_messages_meet(make):
    """Nodes 0 and 1 receive two messages, node 2 one and node 3 none (EDGES)."""
    torch.manual_seed(0)
    summed, mean = make("sum"), make("mean")
    mean.load_state_dict(summed.state_dict())
    h, w = torch.randn(4, 6), torch.randn(5, 6) if isinstance(summed, AGConv) else torch.randn(5)
    a, b = summed(h, EDGES, w), mean(h, EDGES, w)
    torch.testing.assert_close(a[2:], b[2:])
    assert not torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="aggr must be 'sum' or 'mean', got 'max'"):
        make("max")


@pytest.mark.parametrize("aggr", ["sum", "mean"])
def test_agconv_without_edges(aggr):
    conv = AGConv(dim=6, edge_dim=4, hidden=10, aggr=aggr)
    h = torch.randn(3, 6)
    out = conv(h, torch.empty(2, 0, dtype=torch.long), torch.empty(0, 4))
    torch.testing.assert_close(out, conv.mlp(conv.lin0(h)))


def test_gated_readout_matches_equation_14():
    torch.manual_seed(0)
    ro = GatedReadout(dim=5, hidden=9, out_dim=7)
    d, h = torch.randn(6, 5), torch.randn(6, 5)
    batch = torch.tensor([0, 0, 0, 2, 2, 2])  # graph 1 has no node
    g = ro(d, h, batch, num_graphs=3)
    assert g.shape == (3, 7)
    z = torch.cat([d, h], dim=-1)
    per_node = torch.sigmoid(ro.gate(z)) * ro.value(z)
    torch.testing.assert_close(g[0], per_node[:3].sum(0))
    torch.testing.assert_close(g[2], per_node[3:].sum(0))
    assert torch.all(g[1] == 0)
    # The gate and the value are two different MLPs.
    assert ro.gate is not ro.value
    assert not torch.equal(ro.gate[0].weight, ro.value[0].weight)
