"""Building blocks of the DPR models (paper 4.3): MLPs, the two GNN layers, the readout.

* :class:`MLP` -- every "MLP" of the paper: ``Linear -> ReLU -> Linear``.
* :class:`WGConv` -- the DPR-WG message-passing layer (eqs. 11-13).
* :class:`AGConv` -- the DPR-AG message-passing layer (eqs. 18-20).
* :class:`GatedReadout` -- the gated package-graph readout (eq. 14).
* :func:`kaiming_init` -- the initialization of paper 5.1.2.
* :func:`l2_penalty` -- the ``||Theta||_2^2`` term of eqs. 5, 15 and 21.

Edges follow the PyG convention used across ``dpr_dist``: ``edge_index[0]`` is the source
``v`` and ``edge_index[1]`` the target ``u``; a message flows ``v -> u`` and is summed at
``u`` (``aggr="add"``).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter


class MLP(nn.Sequential):
    """``Linear(in, hidden) -> ReLU -> Linear(hidden, out)``.

    The paper's "Multilayer Perceptron with ReLU activation function" (Table 3), with one
    hidden layer of width ``hidden`` (128 in paper 5.1.2).

    Args:
        in_dim: Input size.
        hidden: Hidden width.
        out_dim: Output size.

    Shapes:
        ``[*, in_dim] -> [*, out_dim]``
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        self.in_dim, self.hidden, self.out_dim = in_dim, hidden, out_dim

    def extra_repr(self) -> str:
        return f"{self.in_dim} -> {self.hidden} -> {self.out_dim}"


def kaiming_init(module: nn.Module) -> None:
    """Kaiming-initialize every parameter of ``module`` in place (paper 5.1.2).

    Weight matrices (Linear, Embedding, LSTM/GRU ``weight_*``, any parameter with two or
    more dimensions) get ``kaiming_uniform_`` with the ReLU gain; biases and other
    one-dimensional parameters (such as learned default states) are set to zero. The
    padding row of an embedding with ``padding_idx`` stays zero.

    Args:
        module: The module whose parameters are (re)initialized.
    """
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.dim() >= 2:
                nn.init.kaiming_uniform_(param, nonlinearity="relu")
            else:
                nn.init.zeros_(param)
        for sub in module.modules():
            if isinstance(sub, nn.Embedding) and sub.padding_idx is not None:
                sub.weight[sub.padding_idx].zero_()


def l2_penalty(params: Iterable[Tensor]) -> Tensor:
    """``||Theta||_2^2``: the sum of the squares of all given parameters.

    The BPR losses of the models return the data term only; the trainer adds
    ``lambda * l2_penalty(model.parameters())`` (eqs. 5, 15, 21).

    Args:
        params: Parameters (tensors) to penalize.

    Returns:
        A scalar tensor.
    """
    total: Tensor | None = None
    for p in params:
        term = p.pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("l2_penalty: no parameters given")
    return total


class WGConv(MessagePassing):
    """DPR-WG message-passing layer on a weighted package graph (eqs. 11-13).

    ``m_vu = W1 h_v`` (eq. 11); ``M_u = sum_{v in N(u)} GRU(e^_vu * m_vu, h_u)`` (eq. 12),
    one ``GRUCell`` step per incoming edge with input ``e^_vu * m_vu`` and hidden state
    ``h_u``; ``h_u' = MLP(W0 h_u + M_u)`` (eq. 13). A node without incoming edges gets
    ``M_u = 0``. ``W0`` and ``W1`` are plain matrices (no bias). With ``aggr="mean"``,
    ``M_u`` is the mean of the GRU outputs instead of their sum (``model.aggr``).

    Args:
        dim: Node size ``D`` (all layers keep the size of layer 0, the drug embedding).
        hidden: Hidden width of the update MLP.
        aggr: ``"sum"`` (eq. 12) or ``"mean"``.

    Shapes:
        x ``[N, D]``, edge_index ``[2, E]``, edge_weight ``[E]`` -> ``[N, D]``
    """

    def __init__(self, dim: int, hidden: int, aggr: str = "sum") -> None:
        if aggr not in ("sum", "mean"):
            raise ValueError(f"WGConv: aggr must be 'sum' or 'mean', got {aggr!r}")
        super().__init__(aggr=aggr)
        self.lin0 = nn.Linear(dim, dim, bias=False)  # W0 (eq. 13)
        self.lin1 = nn.Linear(dim, dim, bias=False)  # W1 (eq. 11)
        self.gru = nn.GRUCell(dim, dim)  # GRU (eq. 12)
        self.mlp = MLP(dim, hidden, dim)  # MLP (eq. 13)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        """Run one layer.

        Args:
            x: Node states ``h^(l-1)`` ``[N, D]``.
            edge_index: ``[2, E]`` (row 0 source ``v``, row 1 target ``u``).
            edge_weight: Updated edge weights ``e^_vu`` ``[E]``.

        Returns:
            ``h^(l)`` ``[N, D]``.
        """
        msg = self.lin1(x)  # eq. 11, computed once per node
        agg = self.propagate(edge_index, m=msg, h=x, w=edge_weight)  # eq. 12
        return self.mlp(self.lin0(x) + agg)  # eq. 13

    def message(self, m_j: Tensor, h_i: Tensor, w: Tensor) -> Tensor:
        return self.gru(w.unsqueeze(-1) * m_j, h_i)


class AGConv(MessagePassing):
    """DPR-AG message-passing layer on an attributed package graph (eqs. 18-20).

    ``m_vu = W1 e^_vu`` (eq. 18); ``M_u = sum_{v in N(u)} m_vu`` (eq. 19);
    ``h_u' = MLP(W0 h_u + M_u)`` (eq. 20). ``W0`` and ``W1`` are plain matrices. With
    ``aggr="mean"``, ``M_u`` is the mean over ``N(u)`` instead (``model.aggr``).

    Args:
        dim: Node size ``D``.
        edge_dim: Size of the edge attribute vectors (eq. 16).
        hidden: Hidden width of the update MLP.
        aggr: ``"sum"`` (eq. 19) or ``"mean"``; a node without incoming edges gets
            ``M_u = 0`` either way.

    Shapes:
        x ``[N, D]``, edge_index ``[2, E]``, edge_attr ``[E, edge_dim]`` -> ``[N, D]``
    """

    def __init__(self, dim: int, edge_dim: int, hidden: int, aggr: str = "sum") -> None:
        if aggr not in ("sum", "mean"):
            raise ValueError(f"AGConv: aggr must be 'sum' or 'mean', got {aggr!r}")
        super().__init__(aggr=aggr)
        self.lin0 = nn.Linear(dim, dim, bias=False)  # W0 (eq. 20)
        self.lin1 = nn.Linear(edge_dim, dim, bias=False)  # W1 (eq. 18)
        self.mlp = MLP(dim, hidden, dim)  # MLP (eq. 20)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """Run one layer.

        Args:
            x: Node states ``h^(l-1)`` ``[N, D]``.
            edge_index: ``[2, E]`` (row 0 source ``v``, row 1 target ``u``).
            edge_attr: Masked edge attributes ``e^_vu`` ``[E, edge_dim]``.

        Returns:
            ``h^(l)`` ``[N, D]``.
        """
        agg = self.propagate(edge_index, e=edge_attr, size=(x.size(0), x.size(0)))  # eq. 19
        return self.mlp(self.lin0(x) + agg)  # eq. 20

    def message(self, e: Tensor) -> Tensor:
        return self.lin1(e)  # eq. 18


class GatedReadout(nn.Module):
    """Gated sum readout of a package graph (eq. 14).

    ``g = sum_v sigmoid(MLP_a([d_v || h_v])) * MLP_b([d_v || h_v])`` with two different
    MLPs, summed over the nodes of each graph.

    Args:
        dim: Node size ``D`` (of both ``d_v`` and ``h_v``).
        hidden: Hidden width of the MLPs.
        out_dim: Size of the package embedding ``g``.

    Shapes:
        d ``[N, D]``, h ``[N, D]``, batch ``[N]`` -> ``[G, out_dim]``
    """

    def __init__(self, dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.gate = MLP(2 * dim, hidden, out_dim)
        self.value = MLP(2 * dim, hidden, out_dim)

    def forward(self, d: Tensor, h: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """Embed each graph.

        Args:
            d: Initial drug embeddings ``[N, D]``.
            h: Final node states ``[N, D]``.
            batch: Graph index of each node ``[N]``.
            num_graphs: ``G`` (graphs without nodes get a zero embedding).

        Returns:
            ``g`` ``[G, out_dim]``.
        """
        z = torch.cat([d, h], dim=-1)
        per_node = torch.sigmoid(self.gate(z)) * self.value(z)
        return scatter(per_node, batch, dim=0, dim_size=num_graphs, reduce="sum")
