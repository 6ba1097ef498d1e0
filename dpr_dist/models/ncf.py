"""NCF pre-training of patient and drug embeddings (paper 4.1, eqs. 4-5).

The pre-trained :class:`NCF` also serves as the NCF baseline (top-``K`` drugs as the
package, paper 5.1.1) and initializes the encoder and drug embeddings of DPR
(:meth:`dpr_dist.models.dpr.DPR.load_pretrained`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpr_dist.config import ModelConfig
from dpr_dist.models.batch import PatientBatch, check_ids
from dpr_dist.models.encoder import PatientEncoder
from dpr_dist.models.layers import MLP, kaiming_init


class NCF(nn.Module):
    """Patient-drug matching model ``r_ij = MLP([u_i || d_j])`` (eq. 4) with BPR (eq. 5).

    Args:
        cfg: Dimensions (``drug_dim``, ``hidden`` and the encoder's).
        num_drugs: ``M``.
        num_doc_words: Disease-document vocabulary size.
        num_chars: Character vocabulary size (padding id 0 included).

    Attributes:
        encoder: The :class:`PatientEncoder` (eqs. 1-3).
        drug_emb: ``nn.Embedding(M, drug_dim)``, the drug embeddings ``d_j``.
        match: The matching MLP of eq. 4, ``[u || d] -> 1``.
    """

    def __init__(self, cfg: ModelConfig, num_drugs: int, num_doc_words: int, num_chars: int) -> None:
        super().__init__()
        if num_drugs < 1:
            raise ValueError(f"NCF: num_drugs must be >= 1, got {num_drugs}")
        self.num_drugs = num_drugs
        self.encoder = PatientEncoder(cfg, num_doc_words, num_chars)
        self.drug_emb = nn.Embedding(num_drugs, cfg.drug_dim)
        self.match = MLP(self.encoder.out_dim + cfg.drug_dim, cfg.hidden, 1)  # eq. 4
        kaiming_init(self)

    def encode(self, p: PatientBatch) -> Tensor:
        """Patient embeddings ``u`` ``[B, D_u]`` (eq. 3)."""
        return self.encoder(p)

    def score(self, u: Tensor, drugs: Tensor) -> Tensor:
        """``r_ij = MLP([u_i || d_j])`` (eq. 4) for ``K`` drugs per patient.

        Args:
            u: ``[B, D_u]`` patient embeddings.
            drugs: ``[B, K]`` int64 drug ids.

        Returns:
            ``[B, K]`` scores.
        """
        if drugs.dim() != 2 or drugs.size(0) != u.size(0):
            raise ValueError(f"NCF.score: drugs must be [{u.size(0)}, K], got {tuple(drugs.shape)}")
        check_ids(drugs, self.num_drugs, "NCF.score: drugs")
        d = self.drug_emb(drugs)  # [B, K, D]
        uu = u.unsqueeze(1).expand(-1, drugs.size(1), -1)
        return self.match(torch.cat([uu, d], dim=-1)).squeeze(-1)

    @torch.no_grad()
    def rank_drugs(self, u: Tensor, chunk_elems: int = 1 << 24) -> Tensor:
        """Scores of all ``M`` drugs for each patient (top-``K`` recommendation).

        Equal to :meth:`score` with every drug, computed without materializing the
        ``[B, M, D_u + D]`` concatenation: the first linear layer of the matching MLP is
        split into its patient and drug halves.

        Args:
            u: ``[B, D_u]`` patient embeddings.
            chunk_elems: Bound on ``B * chunk * hidden`` elements held at once.

        Returns:
            ``[B, M]`` scores.
        """
        lin1, lin2 = self.match[0], self.match[2]
        du = u.size(1)
        a = u @ lin1.weight[:, :du].T + lin1.bias  # [B, hidden]
        c = self.drug_emb.weight @ lin1.weight[:, du:].T  # [M, hidden]
        step = max(1, chunk_elems // max(1, a.size(0) * a.size(1)))
        out = [
            torch.relu(a.unsqueeze(1) + c[s : s + step].unsqueeze(0)) @ lin2.weight[0] + lin2.bias
            for s in range(0, self.num_drugs, step)
        ]
        return torch.cat(out, dim=1)

    def forward(
        self, p: PatientBatch, pos: Tensor, neg: Tensor, pos_mask: Tensor | None = None
    ) -> Tensor:
        """The training loss, :meth:`loss` (so that ``DistributedDataParallel(ncf)(...)`` runs it)."""
        return self.loss(p, pos, neg, pos_mask)

    def loss(
        self, p: PatientBatch, pos: Tensor, neg: Tensor, pos_mask: Tensor | None = None
    ) -> Tensor:
        """BPR loss of eq. 5 (data term), averaged over the valid (positive, negative) pairs.

        ``-ln sigma(r_ij - r_il)`` for each positive drug ``j`` of a patient and each of its
        sampled negative drugs ``l`` (drugs outside the package; sampling them is the data
        pipeline's job). The L2 term ``lambda ||Theta||^2`` is not included: the trainer
        adds ``lambda * l2_penalty(model.parameters())``.

        Args:
            p: ``B`` patients.
            pos: ``[B, P]`` int64 positive drugs (padded rows allowed, see ``pos_mask``).
            neg: ``[B, P, N]`` int64 negative drugs for each positive.
            pos_mask: ``[B, P]`` bool, False on padding positives (default: all valid).

        Returns:
            Scalar loss.
        """
        b, k = pos.shape
        if neg.dim() != 3 or neg.shape[:2] != pos.shape:
            raise ValueError(f"NCF.loss: neg must be [{b}, {k}, N], got {tuple(neg.shape)}")
        if pos_mask is None:
            pos_mask = torch.ones_like(pos, dtype=torch.bool)
        elif pos_mask.shape != pos.shape:
            raise ValueError(f"NCF.loss: pos_mask must be [{b}, {k}], got {tuple(pos_mask.shape)}")
        # Padding entries may hold any id; score a valid one (0) and mask the pair out.
        pos = pos.masked_fill(~pos_mask, 0)
        neg = neg.masked_fill(~pos_mask.unsqueeze(-1), 0)
        u = self.encode(p)
        r_pos = self.score(u, pos)  # [B, P]
        r_neg = self.score(u, neg.reshape(b, -1)).reshape(neg.shape)  # [B, P, N]
        pair = -F.logsigmoid(r_pos.unsqueeze(-1) - r_neg)  # eq. 5
        weight = pos_mask.unsqueeze(-1).expand_as(pair).to(pair.dtype)
        count = weight.sum()
        if float(count) == 0:
            raise ValueError("NCF.loss: the batch has no valid positive drug")
        return (pair * weight).sum() / count
