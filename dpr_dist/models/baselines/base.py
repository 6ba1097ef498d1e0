"""What every package baseline of paper 5.1.1 shares with :class:`~dpr_dist.models.dpr.DPR`.

:class:`PackageBaseline` gives a baseline the interface the trainer and the evaluator use
on DPR, so they run it unchanged:

* ``encode(p) -> u`` ``[B, D_u]``: the patient encoder of paper 4.1 (every baseline uses
  it, "we exploited the patient embedding model proposed in Section 4.1");
* ``package_embedding(u, graphs, owner) -> [G, D_g]`` and ``score(u, graphs, owner) -> [G]``
  (the subclass's job);
* ``loss(p, graphs, owner, num_negatives) -> (loss, stats)``: package BPR over the
  patient-major layout of :meth:`DPR.loss`; ``forward = loss``;
* ``load_pretrained(ncf)``: the encoder (and, for baselines with ``drug_emb``, the drug
  embeddings) from the pre-trained NCF;
* ``name`` and ``variant`` (a :class:`~dpr_dist.models.variants.Variant` with ``graph="none"``
  and every DPR part off: baselines see a package as its set of drugs, never its edges).

Baselines with an unsupervised fit (Package2vec, LDA) also implement
``fit_packages(packages, num_drugs, seed)``; :func:`check_packages` validates its input.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch

from dpr_dist.config import ModelConfig
from dpr_dist.models.batch import GraphInput, PatientBatch, check_ids, graph_index
from dpr_dist.models.encoder import PatientEncoder
from dpr_dist.models.ncf import NCF
from dpr_dist.models.variants import Variant

def check_packages(packages: Sequence[np.ndarray], num_drugs: int, where: str) -> list[np.ndarray]:
    """Validate training packages for an unsupervised fit.

    Args:
        packages: ``N`` 1-D arrays of drug ids.
        num_drugs: ``M``; ids must be in ``[0, M)``.
        where: Caller name for the messages.

    Returns:
        The packages as int64 arrays.

    Raises:
        ValueError: on no packages, or naming the package index of an empty package, a
            non-integer array or an id out of range.
    """
    if len(packages) == 0:
        raise ValueError(f"{where}: no packages given")
    out = []
    for i, pkg in enumerate(packages):
        arr = np.asarray(pkg)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{where}: package {i} must be a non-empty 1-D array of drug ids")
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{where}: package {i} has drug ids of dtype {arr.dtype}, expected integers")
        arr = arr.astype(np.int64, copy=False)
        if arr.min() < 0 or arr.max() >= num_drugs:
            raise ValueError(f"{where}: package {i} has a drug id outside [0, {num_drugs})")
        out.append(arr)
    return out


class PackageBaseline(nn.Module):
    """Base of the package baselines: patient encoder, graph checks, BPR loss.

    Args:
        cfg: Dimensions of the encoder (``mlp_out``, ``char_dim``, ``lstm_hidden``,
            ``hidden``) and of the subclass.
        num_drugs: ``M``.
        num_doc_words: Disease-document vocabulary size.
        num_chars: Character vocabulary size (padding id 0 included).

    Attributes:
        name: The model name (``cfg.name`` of the baseline), set by the subclass.
        trainable: Whether the trainer runs BPR steps on it (False for NN).
        encoder: The :class:`PatientEncoder` (eqs. 1-3).
    """

    name: str = ""
    trainable: bool = True

    def __init__(self, cfg: ModelConfig, num_drugs: int, num_doc_words: int, num_chars: int) -> None:
        super().__init__()
        if num_drugs < 1:
            raise ValueError(f"{type(self).__name__}: num_drugs must be >= 1, got {num_drugs}")
        self.num_drugs = num_drugs
        self.variant = Variant(self.name, graph="none")
        self.encoder = PatientEncoder(cfg, num_doc_words, num_chars)

    # ------------------------------------------------------------------ patients
    def encode(self, p: PatientBatch) -> Tensor:
        """Patient embeddings ``u`` ``[B, D_u]`` (eq. 3)."""
        return self.encoder(p)

    # ------------------------------------------------------------------ graphs
    def check_graphs(self, graphs: GraphInput, owner: Tensor, num_patients: int) -> tuple[Tensor, int]:
        """Validate package graphs and their owners.

        Returns:
            The node-to-graph index ``[N]`` and the number of graphs ``G``.

        Raises:
            ValueError: naming the field (and row) that is wrong.
        """
        batch, num_graphs = graph_index(graphs)
        who = type(self).__name__
        if owner.dim() != 1 or owner.size(0) != num_graphs:
            raise ValueError(f"{who}: owner must be [{num_graphs}] (one per graph), got {tuple(owner.shape)}")
        check_ids(owner, num_patients, f"{who}: owner (patient row per graph)")
        check_ids(graphs.drug, self.num_drugs, f"{who}: graphs.drug (node)")
        return batch, num_graphs

    def package_embedding(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> Tensor:
        """Package embeddings ``[G, D_g]`` (subclasses)."""
        raise NotImplementedError

    def score(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> Tensor:
        """Score ``[G]`` of each package for the patient ``u[owner[g]]`` (subclasses)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def forward(
        self, p: PatientBatch, graphs: Batch, owner: Tensor, num_negatives: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The training loss, :meth:`loss` (so that ``DistributedDataParallel(model)(...)`` runs it)."""
        return self.loss(p, graphs, owner, num_negatives)

    def loss(
        self, p: PatientBatch, graphs: Batch, owner: Tensor, num_negatives: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Package BPR loss ``-ln sigma(s_i - s_j)`` over the patient-major layout.

        With ``K = num_negatives``, graph ``i * (1 + K)`` is the positive package of
        patient ``i`` and the next ``K`` graphs its negatives; ``owner`` must equal
        ``arange(B).repeat_interleave(1 + K)`` (as in :meth:`DPR.loss`). The L2 term is
        left to the trainer.

        Args:
            p: ``B`` patients.
            graphs: ``B * (1 + K)`` package graphs.
            owner: ``[B * (1 + K)]`` int64.
            num_negatives: ``K >= 1``.

        Returns:
            ``(loss, stats)``; ``stats`` holds detached scalars ``bpr`` and ``pair_acc``.
        """
        who = type(self).__name__
        k = int(num_negatives)
        if k < 1:
            raise ValueError(f"{who}.loss: num_negatives must be >= 1, got {num_negatives}")
        b, group = len(p), 1 + k
        _, num_graphs = graph_index(graphs)
        if num_graphs != b * group:
            raise ValueError(f"{who}.loss: expected {b} patients x (1 + {k}) = {b * group} graphs, got {num_graphs}")
        expected = torch.arange(b, device=owner.device).repeat_interleave(group)
        if owner.shape != expected.shape or not bool((owner == expected).all()):
            raise ValueError(f"{who}.loss: owner must be arange(B).repeat_interleave(1 + K) (patient-major)")
        s = self.score(self.encode(p), graphs, owner).view(b, group)
        diff = s[:, :1] - s[:, 1:]  # positive minus each negative, [B, K]
        bpr = -F.logsigmoid(diff).mean()
        return bpr, {"bpr": bpr.detach(), "pair_acc": (diff > 0).float().mean().detach()}

    # ------------------------------------------------------------------ pre-training
    def load_pretrained(self, ncf: NCF) -> None:
        """Copy the pre-trained NCF's encoder and, if this model has ``drug_emb``, its drug embeddings.

        Raises:
            ValueError: naming the first parameter whose shape differs.
        """
        pairs: list[tuple[str, Tensor, Tensor]] = []
        theirs = ncf.encoder.state_dict()
        for key, t in self.encoder.state_dict().items():
            pairs.append((f"encoder.{key}", t, theirs.get(key)))
        if isinstance(getattr(self, "drug_emb", None), nn.Embedding):
            pairs.append(("drug_emb.weight", self.drug_emb.weight, ncf.drug_emb.weight))
        for key, mine, other in pairs:
            if other is None or other.shape != mine.shape:
                got = "missing" if other is None else tuple(other.shape)
                raise ValueError(
                    f"{type(self).__name__}.load_pretrained: {key} is {tuple(mine.shape)} here, {got} in the NCF"
                )
        with torch.no_grad():
            for _, mine, other in pairs:
                mine.copy_(other)
