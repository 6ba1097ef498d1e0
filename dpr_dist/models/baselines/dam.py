"""DAM baseline (paper 5.1.1): factorized attention over a package's drugs (Chen et al. 2019).

The package embedding is built from its drug embeddings ``d_i`` (initialized from the
pre-trained NCF) in two attention steps, then scored in the NCF framework:

1. self-attention inside the package (item-item interactions, factorized through
   low-rank query / key maps): ``h_i = d_i + sum_j softmax_j((W_q d_i) . (W_k d_j) /
   sqrt(D)) W_v d_j``;
2. attention pooling: ``a_i = softmax_i(w^T tanh(W_a h_i + b_a))`` over the package,
   ``g = sum_i a_i h_i``;
3. ``s = MLP([u || g])`` with BPR.

The multi-task user-item loss of the original DAM is not used (the patients of this
task are not fixed users; the pre-trained NCF already learns patient-drug matching).
Self-attention runs on a padded ``[G, n_max, D]`` view of the packages
(:func:`torch_geometric.utils.to_dense_batch`), the pooling on the flat nodes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax, to_dense_batch

from dpr_dist.config import ModelConfig
from dpr_dist.models.baselines.base import PackageBaseline
from dpr_dist.models.batch import GraphInput
from dpr_dist.models.layers import MLP, kaiming_init


class DAM(PackageBaseline):
    """Factorized-attention package embedding scored by ``MLP([u || g])``.

    Args:
        cfg: ``drug_dim`` (``D``), ``hidden`` (attention rank and scoring MLP) and the
            encoder's.
        num_drugs: ``M``.
        num_doc_words: Disease-document vocabulary size.
        num_chars: Character vocabulary size (padding id 0 included).

    Attributes:
        drug_emb: ``nn.Embedding(M, D)`` (from the NCF).
        query, key: ``W_q``, ``W_k``: ``[D] -> [hidden]``, no bias (the factorized
            item-item attention ``d_i^T W_q^T W_k d_j``).
        value: ``W_v``: ``[D] -> [D]``, no bias.
        pool: ``W_a``, ``b_a``: ``[D] -> [hidden]``; ``pool_w``: ``w``, ``[hidden] -> 1``.
        predict: ``MLP([u || g]) -> 1``.
    """

    name = "dam"

    def __init__(self, cfg: ModelConfig, num_drugs: int, num_doc_words: int, num_chars: int) -> None:
        super().__init__(cfg, num_drugs, num_doc_words, num_chars)
        dim, hid = cfg.drug_dim, cfg.hidden
        self.drug_emb = nn.Embedding(num_drugs, dim)
        self.query = nn.Linear(dim, hid, bias=False)
        self.key = nn.Linear(dim, hid, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.pool = nn.Linear(dim, hid)
        self.pool_w = nn.Linear(hid, 1, bias=False)
        self.predict = MLP(self.encoder.out_dim + dim, hid, 1)
        self.scale = 1.0 / math.sqrt(hid)
        kaiming_init(self)

    def attend(self, d: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """Self-attention of each node over the nodes of its package.

        Args:
            d: Drug embeddings ``[N, D]`` (nodes of a graph contiguous, as in a PyG Batch).
            batch: Graph index ``[N]``, sorted.
            num_graphs: ``G``.

        Returns:
            ``h`` ``[N, D]``.
        """
        dense, mask = to_dense_batch(d, batch, batch_size=num_graphs)  # [G, n, D], [G, n]
        att = torch.einsum("gih,gjh->gij", self.query(dense), self.key(dense)) * self.scale
        att = att.masked_fill(~mask.unsqueeze(1), torch.finfo(att.dtype).min)  # padding keys
        out = torch.softmax(att, dim=-1) @ self.value(dense)  # [G, n, D]
        return d + out[mask]

    def package_embedding(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> Tensor:
        """Attention-pooled package embeddings ``g`` ``[G, D]`` (zero for a graph without nodes).

        Args:
            u: ``[B, D_u]`` patient embeddings (only checked against ``owner``).
            graphs: ``G`` package graphs (``drug`` ``[N]``).
            owner: ``[G]`` int64 row of ``u`` of each graph.
        """
        batch, num_graphs = self.check_graphs(graphs, owner, u.size(0))
        if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
            raise ValueError("DAM: graphs.batch must be sorted (nodes of a graph contiguous)")
        h = self.attend(self.drug_emb(graphs.drug), batch, num_graphs)
        logit = self.pool_w(torch.tanh(self.pool(h))).squeeze(-1)  # [N]
        alpha = softmax(logit, batch, num_nodes=num_graphs, dim=0)
        return scatter(alpha.unsqueeze(-1) * h, batch, dim=0, dim_size=num_graphs, reduce="sum")

    def score(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> Tensor:
        """Scores ``MLP([u_owner || g])`` ``[G]``."""
        g = self.package_embedding(u, graphs, owner)
        return self.predict(torch.cat([u[owner], g], dim=-1)).squeeze(-1)
