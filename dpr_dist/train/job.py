"""The whole training job of ``jobs/*.py``: synthetic data and preparation when absent,
pre-training, training, test metrics; and the entry points' command line.

* :func:`ensure_data` -- generate synthetic data (``synth`` section) and prepare it, each
  only when its output is absent;
* :func:`run_job` -- data, preparation, pre-training, training of each model and the test
  metrics (with the NCF and popularity baselines);
* :func:`job_config` -- ``--config FILE`` and ``--set key=value`` of a job script.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from dpr_dist.config import Config
from dpr_dist.data import io
from dpr_dist.eval.evaluate import evaluate_models, format_table
from dpr_dist.runtime import ensure_ray
from dpr_dist.train.modeldir import load_model_dir, update_metrics
from dpr_dist.train.prepared import read_records
from dpr_dist.train.run import train

log = logging.getLogger(__name__)


def ensure_data(cfg: Config) -> dict:
    """Generate synthetic data (``synth`` section) if ``data.emr`` is absent, then prepare it
    if ``data.prepared`` has no manifest. Returns the manifest."""
    if io.exists(io.join(cfg.data.prepared, "manifest.json")):
        return io.read_json(io.join(cfg.data.prepared, "manifest.json"))
    if not io.exists(cfg.data.emr):
        from dpr_dist.data import synth

        out = cfg.data.emr.rstrip("/").rsplit("/", 1)[0] if "/" in cfg.data.emr else "."
        expected = (io.join(out, "emr"), io.join(out, "ddi.parquet"))
        if (cfg.data.emr.rstrip("/"), cfg.data.ddi) != expected:
            raise ValueError(f"data.emr={cfg.data.emr!r} does not exist; synthetic data is written as "
                             f"{expected[0]!r} and {expected[1]!r}: set data.emr and data.ddi to those")
        emr, ddi = synth.generate(cfg.synth.records, cfg.synth.drugs, seed=cfg.seed,
                                  conditions=cfg.synth.conditions, notes=cfg.synth.notes,
                                  mean_package=cfg.synth.mean_package,
                                  knobs=cfg.synth.knobs())
        synth.write(emr, ddi, out)
        log.info("generated %d synthetic records -> %s", cfg.synth.records, out)
    from dpr_dist.data.prepare import prepare

    return prepare(cfg)


def run_job(cfg: Config, models: Sequence[str] = ("ag",), baselines: Sequence[str] = ("ncf", "popularity"),
            split: str = "test") -> dict[str, Any]:
    """The whole path: data, preparation, pre-training, training, evaluation.

    Every stage is skipped or resumed when its output exists: data and prepared data by
    path, pre-training and training runs by name.

    Args:
        cfg: The configuration.
        models: Package models to train (each gets its run and model directory).
        baselines: Baselines evaluated from the first model's directory
            (``ncf``, ``popularity``, ``nn``).
        split: The split the metrics are computed on.

    Returns:
        ``{"model_dirs": {model: dir}, "metrics": {model: metrics}, "table": str}``; the
        table is also printed, and each model's metrics are added to its directory.
    """
    ensure_ray()
    ensure_data(cfg)
    dirs = {m: train(cfg, m) for m in models}  # the first pre-trains NCF (or finds it done)
    records = read_records(cfg.data.prepared, split)
    results: dict[str, dict] = {}
    for i, m in enumerate(models):
        bundle = load_model_dir(dirs[m])
        names = ([b for b in baselines if b != m] if i == 0 else []) + [m]
        mets, _ = evaluate_models(bundle, records, names)
        update_metrics(dirs[m], {split: mets[m]})
        results.update(mets)
    table = format_table(results)
    print(f"\n{split} metrics ({records.num_rows} records)\n{table}", flush=True)
    return {"model_dirs": dirs, "metrics": results, "table": table}


def job_config(description: str, argv: Sequence[str] | None = None, default_config: str | None = None) -> Config:
    """The configuration of a job entry point (``jobs/*.py``) from its command line.

    ``--config FILE`` (default ``default_config``, else the built-in defaults) and
    repeatable ``--set section.key=value`` overrides.
    """
    import argparse

    from dpr_dist.config import load_config

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", metavar="FILE", default=default_config,
                   help=f"YAML config (default: {default_config or 'built-in defaults'})")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    args = p.parse_args(argv)
    return load_config(args.config, args.overrides)
