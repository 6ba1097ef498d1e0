"""BR baseline (paper 5.1.1): bundle BPR of Pathak et al. 2017 (Steam bundles).

A package ``b`` of ``n`` drugs is scored for a patient ``u`` from item latent vectors,
the package size and the compatibility of its items:

``s(u, b) = (P u) . mean_{i in b} d_i          preference for the items
          + a_u log n + c_u (log n)^2          personalized size term, [a_u, c_u] = S u + s_0
          + mean_{i != j in b} q_i . q_j       item compatibility``

``d_i`` are the drug embeddings (initialized from the pre-trained NCF), ``q_i`` separate
compatibility vectors, ``P`` a linear map from the patient embedding to the item space
and ``S`` the size head (the quadratic in ``log n`` lets a patient prefer a size). The
mean over pairs is ``(|sum_i q_i|^2 - sum_i |q_i|^2) / (n (n - 1))``, ``O(n)`` per
package and 0 for a single drug. The package's graph edges are not used: BR sees the
package as its set of drugs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from dpr_dist.config import ModelConfig
from dpr_dist.models.baselines.base import PackageBaseline
from dpr_dist.models.batch import GraphInput
from dpr_dist.models.layers import kaiming_init


class BR(PackageBaseline):
    """Bundle BPR: item preference + size + pairwise compatibility.

    Args:
        cfg: ``drug_dim`` (item and compatibility vectors) and the encoder's.
        num_drugs: ``M``.
        num_doc_words: Disease-document vocabulary size.
        num_chars: Character vocabulary size (padding id 0 included).

    Attributes:
        drug_emb: ``nn.Embedding(M, drug_dim)``, item vectors ``d_i`` (from the NCF).
        compat_emb: ``nn.Embedding(M, drug_dim)``, compatibility vectors ``q_i``.
        user_proj: ``P``, ``[D_u] -> [drug_dim]``, no bias.
        size_head: ``S``, ``[D_u] -> 2`` coefficients of ``log n`` and ``(log n)^2``.
    """

    name = "br"

    def __init__(self, cfg: ModelConfig, num_drugs: int, num_doc_words: int, num_chars: int) -> None:
        super().__init__(cfg, num_drugs, num_doc_words, num_chars)
        dim = cfg.drug_dim
        self.drug_emb = nn.Embedding(num_drugs, dim)
        self.compat_emb = nn.Embedding(num_drugs, dim)
        self.user_proj = nn.Linear(self.encoder.out_dim, dim, bias=False)
        self.size_head = nn.Linear(self.encoder.out_dim, 2)
        kaiming_init(self)

    def package_embedding(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> Tensor:
        """Mean item vector ``mean_{i in b} d_i`` ``[G, drug_dim]`` of each package.

        Args:
            u: ``[B, D_u]`` patient embeddings (only checked against ``owner``).
            graphs: ``G`` package graphs (``drug`` ``[N]``).
            owner: ``[G]`` int64 row of ``u`` of each graph.
        """
        batch, num_graphs = self.check_graphs(graphs, owner, u.size(0))
        return scatter(self.drug_emb(graphs.drug), batch, dim=0, dim_size=num_graphs, reduce="mean")

    def terms(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> dict[str, Tensor]:
        """The three terms of the score, each ``[G]``: ``items``, ``size``, ``compat``."""
        batch, num_graphs = self.check_graphs(graphs, owner, u.size(0))
        uo = u[owner]  # [G, D_u]
        g = scatter(self.drug_emb(graphs.drug), batch, dim=0, dim_size=num_graphs, reduce="mean")
        items = (self.user_proj(uo) * g).sum(dim=-1)
        n = scatter(torch.ones_like(batch, dtype=g.dtype), batch, dim=0, dim_size=num_graphs, reduce="sum")
        log_n = torch.log(n.clamp(min=1.0))
        coef = self.size_head(uo)  # [G, 2]
        size = coef[:, 0] * log_n + coef[:, 1] * log_n.square()
        q = self.compat_emb(graphs.drug)  # [N, D]
        total = scatter(q, batch, dim=0, dim_size=num_graphs, reduce="sum")  # [G, D]
        self_dot = scatter(q.square().sum(dim=-1), batch, dim=0, dim_size=num_graphs, reduce="sum")
        pairs = n * (n - 1)
        compat = (total.square().sum(dim=-1) - self_dot) / pairs.clamp(min=1.0)
        return {"items": items, "size": size, "compat": compat}

    def score(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> Tensor:
        """Scores ``items + size + compat`` ``[G]`` (module docstring)."""
        t = self.terms(u, graphs, owner)
        return t["items"] + t["size"] + t["compat"]
