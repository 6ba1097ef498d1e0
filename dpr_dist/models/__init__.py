"""Models of the paper: the patient encoder, NCF pre-training, DPR-WG / DPR-AG and variants.

* :class:`PatientBatch`, :func:`graphs_from_packages` -- model inputs (``batch.py``).
* :class:`PatientEncoder` -- eqs. 1-3 (``encoder.py``).
* :class:`NCF` -- eqs. 4-5 (``ncf.py``).
* :class:`WGConv`, :class:`AGConv`, :class:`GatedReadout`, :class:`MLP` -- eqs. 11-14,
  18-20 (``layers.py``).
* :class:`DPR` -- eqs. 9-21 (``dpr.py``).
* :class:`Variant`, :data:`VARIANTS`, :func:`build_model` -- which model a config names, the
  ablations (``variants.py``).
"""

from dpr_dist.models.batch import PatientBatch, graphs_from_packages, initial_edge_weight
from dpr_dist.models.dpr import DPR
from dpr_dist.models.encoder import PatientEncoder
from dpr_dist.models.layers import MLP, AGConv, GatedReadout, WGConv, kaiming_init, l2_penalty
from dpr_dist.models.ncf import NCF
from dpr_dist.models.variants import VARIANTS, Variant, build_model

__all__ = [
    "AGConv",
    "DPR",
    "GatedReadout",
    "MLP",
    "NCF",
    "PatientBatch",
    "PatientEncoder",
    "VARIANTS",
    "Variant",
    "WGConv",
    "build_model",
    "graphs_from_packages",
    "initial_edge_weight",
    "kaiming_init",
    "l2_penalty",
]
