"""What several benchmark scripts share (imported as ``_common``: scripts run from this folder)."""

from __future__ import annotations

import os

from dpr_dist.config import Config


def ensure_prepared(cfg: Config, workdir: str, records: int, drugs: int) -> str:
    """``workdir/synth-{records}-{drugs}/prepared``: synthetic records generated and prepared once.

    Args:
        cfg: Configuration (seed, ``synth`` section, ``data`` section of ``prepare``).
        workdir: Folder the data sets are kept in, one per size.
        records, drugs: Size of the synthetic data set.

    Returns:
        The prepared directory (reused when its ``manifest.json`` exists).
    """
    out = os.path.join(workdir, f"synth-{records}-{drugs}")
    prepared = os.path.join(out, "prepared")
    if os.path.exists(os.path.join(prepared, "manifest.json")):
        return prepared
    from dpr_dist.data import synth
    from dpr_dist.data.prepare import prepare

    emr, ddi = synth.generate(records, drugs, seed=cfg.seed, conditions=cfg.synth.conditions,
                              notes=cfg.synth.notes, mean_package=cfg.synth.mean_package)
    synth.write(emr, ddi, out)
    prepare(cfg, emr=os.path.join(out, "emr"), ddi=os.path.join(out, "ddi.parquet"), out=prepared)
    return prepared
