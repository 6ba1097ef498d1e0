"""Which model a config names: the DPR variants and ablations, and :func:`build_model`.

``model.name`` picks the model. A :class:`Variant` names which parts of
:class:`~dpr_dist.models.dpr.DPR` a package-graph model uses (paper 4.3, ablations of
paper 5.2.2):

==============  =====  ==============================================================
name            graph  what is used
==============  =====  ==============================================================
``gnn``         WG     structure only: every edge weight 1, no patient mask
``wg``          WG     ``e^_vu = c_vu * e_vu`` (eqs. 9-10), ``e_vu`` = 1 / -1 / p_vu
``wg_context``  WG     no contextual impact factor: ``e^_vu = e_vu`` (no mask layer)
``wg_type``     WG     no interaction type: ``e^_vu = c_vu`` (``e_vu = 1``)
``ag``          AG     ``e^_vu = sigma(MLP(u)) * MLP([d_v || d_u])`` (eqs. 16-17) + CE
``ag_mask``     AG     no mask layer: ``e^_vu = e_vu``
``ag_type``     AG     no interaction-type cross-entropy in the loss (eq. 21)
==============  =====  ==============================================================

``ncf`` names :class:`~dpr_dist.models.ncf.NCF`; ``nn``, ``package2vec``, ``lda``, ``br``
and ``dam`` name the baselines of :mod:`dpr_dist.models.baselines`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dpr_dist.config import ModelConfig
from dpr_dist.models.ncf import NCF


@dataclass(frozen=True)
class Variant:
    """Which parts of DPR a model uses.

    Attributes:
        name: The model name.
        graph: ``"wg"`` (weighted graph, :class:`~dpr_dist.models.layers.WGConv`) or
            ``"ag"`` (attributed graph, :class:`~dpr_dist.models.layers.AGConv`).
        initial_weights: WG: initial weights ``e_vu`` from ``edge_w`` (else all 1).
        context: WG: contextual impact factor ``c_vu`` through the mask layer (eqs. 9-10).
        edge_mask: AG: mask layer on the edge attributes (eq. 17).
        type_loss: AG: interaction-type cross-entropy through ``Q`` (eq. 21).
    """

    name: str
    graph: str
    initial_weights: bool = False
    context: bool = False
    edge_mask: bool = False
    type_loss: bool = False

    @property
    def has_mask(self) -> bool:
        """Whether the model has the mask layer ``sigma(MLP(u))``."""
        return self.context or self.edge_mask

    @property
    def reads_edges(self) -> bool:
        """Whether the model reads a package graph's edges (False for the package baselines,
        ``graph="none"``, which see a package as its set of drugs)."""
        return self.graph != "none"


def reads_edges(model: nn.Module | None) -> bool:
    """Whether ``model`` reads package-graph edges; True when unknown (None, or no ``variant``),
    so that callers build the full graphs unless a model says it does not need them."""
    variant = getattr(model, "variant", None)
    return True if variant is None else bool(variant.reads_edges)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("gnn", "wg"),
        Variant("wg", "wg", initial_weights=True, context=True),
        Variant("wg_context", "wg", initial_weights=True),
        Variant("wg_type", "wg", context=True),
        Variant("ag", "ag", edge_mask=True, type_loss=True),
        Variant("ag_mask", "ag", type_loss=True),
        Variant("ag_type", "ag", edge_mask=True),
    )
}


def build_model(cfg: ModelConfig, num_drugs: int, num_doc_words: int, num_chars: int) -> nn.Module:
    """The model named ``cfg.name``: :class:`NCF` for ``ncf``, a
    :class:`~dpr_dist.models.dpr.DPR` variant, or a baseline of
    :mod:`dpr_dist.models.baselines` (``nn``, ``package2vec``, ``lda``, ``br``, ``dam``).

    Raises:
        ValueError: on another name.
    """
    from dpr_dist.models.baselines import BASELINES, build_baseline  # imports this module
    from dpr_dist.models.dpr import DPR  # imports this module

    if cfg.name == "ncf":
        return NCF(cfg, num_drugs, num_doc_words, num_chars)
    if cfg.name in VARIANTS:
        return DPR(cfg, num_drugs, num_doc_words, num_chars, cfg.name)
    if cfg.name in BASELINES:
        return build_baseline(cfg, num_drugs, num_doc_words, num_chars)
    raise ValueError(
        f"build_model: model.name {cfg.name!r} is not ncf, a DPR variant {sorted(VARIANTS)} "
        f"or one of the baselines {sorted(BASELINES)}"
    )
