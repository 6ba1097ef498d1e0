"""The package-recommendation baselines of paper 5.1.1, as models the DPR trainer runs.

Every baseline has DPR's interface (:class:`PackageBaseline`: ``encode``,
``package_embedding``, ``score``, ``loss`` / ``forward``, ``load_pretrained``) and the
constructor ``(cfg, num_drugs, num_doc_words, num_chars)``:

===============  ==========================  =============================================
name             class                       package embedding / score
===============  ==========================  =============================================
``nn``           :class:`NearestNeighbor`    none; constant score, the nearest candidate
``package2vec``  :class:`Package2vec`        mean item2vec vector; ``MLP([u || g])``
``lda``          :class:`LDA`                LDA topic proportions; ``MLP([u || theta])``
``br``           :class:`BR`                 items + size + compatibility (bundle BPR)
``dam``          :class:`DAM`                self-attention + attention pooling;
                                             ``MLP([u || g])``
===============  ==========================  =============================================

NCF (:class:`~dpr_dist.models.ncf.NCF`) and GNN (DPR variant ``gnn``) live in
:mod:`dpr_dist.models`. Models with ``fit_packages(packages, num_drugs, seed)``
(Package2vec, LDA) need it called once on the training packages before training; NN
has ``trainable = False``.
"""

from __future__ import annotations

from torch import nn

from dpr_dist.config import ModelConfig
from dpr_dist.models.baselines.base import PackageBaseline, check_packages
from dpr_dist.models.baselines.br import BR
from dpr_dist.models.baselines.dam import DAM
from dpr_dist.models.baselines.lda import LDA
from dpr_dist.models.baselines.nn import NearestNeighbor
from dpr_dist.models.baselines.package2vec import Package2vec

#: Baseline classes by model name.
BASELINES: dict[str, type[PackageBaseline]] = {
    cls.name: cls for cls in (NearestNeighbor, Package2vec, LDA, BR, DAM)
}


def build_baseline(cfg: ModelConfig, num_drugs: int, num_doc_words: int, num_chars: int) -> nn.Module:
    """The baseline named ``cfg.name``.

    Raises:
        ValueError: when ``cfg.name`` is not in :data:`BASELINES`.
    """
    if cfg.name not in BASELINES:
        raise ValueError(f"build_baseline: model.name {cfg.name!r} is not one of {sorted(BASELINES)}")
    return BASELINES[cfg.name](cfg, num_drugs, num_doc_words, num_chars)


__all__ = [
    "BASELINES",
    "BR",
    "DAM",
    "LDA",
    "NearestNeighbor",
    "Package2vec",
    "PackageBaseline",
    "build_baseline",
    "check_packages",
]
