"""Importers from public data sets into the data contract (``dpr import ...``).

* :mod:`~dpr_dist.data.importers.mimic_iv`: MIMIC-IV ``hosp`` tables -> EMR records.
* :mod:`~dpr_dist.data.importers.drugbank`: DrugBank interaction pairs -> interactions.

The submodules are imported on use (``from dpr_dist.data.importers import mimic_iv``).
"""

__all__ = ["drugbank", "mimic_iv"]
