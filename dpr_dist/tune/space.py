"""What a sweep searches and how many trials run at once.

* :func:`search_space` -- Optuna distributions over config keys, from the ``tune`` section;
* :func:`trial_config` -- the configuration of one trial; :func:`default_point` -- the
  configuration's own values, the sweep's first trial;
* :func:`worker_resources`, :func:`max_concurrent_trials` -- a trial's resources (its
  Train workers') and how many trials the cluster fits;
* :func:`asha_scheduler` -- when trials are stopped early.
"""

from __future__ import annotations

import logging
import math
from dataclasses import fields, replace
from typing import Any, Mapping

import optuna

from dpr_dist.config import Config
from dpr_dist.models.variants import VARIANTS

log = logging.getLogger(__name__)

#: What the sweep optimizes (and ASHA compares): the best validation F1 so far of a trial.
METRIC = "best_val_f1"
#: Epochs a trial has completed, added to every result; ASHA's time attribute.
EPOCHS_KEY = "epochs_done"


def search_space(cfg: Config, kind: str | None = None) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions of the sweep, keyed ``section/key`` of the config.

    ``model.edge_dim`` is searched for attributed-graph variants only; the encoder and
    drug-embedding sizes stay those of the shared pre-training (``docs/tuning.md``).
    ``train.rank_weight`` is searched when ``tune.rank_weight`` is not ``(0, 0)``, and
    ``train.rank_consensus`` when ``tune.rank_consensus`` is not (a share in ``[0, 1]``).

    Raises:
        ValueError: on an empty or non-positive (log-scale) range, naming it.
    """
    t = cfg.tune
    kind = kind or cfg.model.name
    # (key, tune field, type, log scale, smallest allowed low)
    specs = [("data/threshold", "threshold", float, True, None),
             ("train/negative_ratio", "negative_ratio", int, False, 1),
             ("model/gnn_layers", "gnn_layers", int, False, 1), ("model/edge_dim", "dim", int, True, None),
             ("train/lr", "lr", float, True, None), ("train/l2", "l2", float, True, None),
             ("train/rank_weight", "rank_weight", float, False, 0),
             ("train/rank_consensus", "rank_consensus", float, False, 0)]
    if VARIANTS[kind].graph != "ag":
        specs = [s for s in specs if s[0] != "model/edge_dim"]
    if t.rank_weight == (0.0, 0.0):  # not searched: trials train with train.rank_weight
        specs = [s for s in specs if s[0] != "train/rank_weight"]
    if t.rank_consensus == (0.0, 0.0):
        specs = [s for s in specs if s[0] != "train/rank_consensus"]
    elif t.rank_consensus[1] > 1:
        raise ValueError(f"tune.rank_consensus={list(t.rank_consensus)!r}: a share, expected high <= 1")
    space: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, field_name, kind_of, log_scale, least in specs:
        low, high = getattr(t, field_name)
        if not low <= high or (log_scale and low <= 0) or (least is not None and low < least):
            raise ValueError(f"tune.{field_name}={[low, high]!r}: expected low <= high"
                             + (" and low > 0" if log_scale else f" and low >= {least}"))
        space[key] = (optuna.distributions.IntDistribution(int(low), int(high), log=log_scale) if kind_of is int
                      else optuna.distributions.FloatDistribution(float(low), float(high), log=log_scale))
    if cfg.train.hard_negatives > t.negative_ratio[0]:
        raise ValueError(f"train.hard_negatives={cfg.train.hard_negatives} exceeds the smallest searched "
                         f"negative ratio (tune.negative_ratio={list(t.negative_ratio)}); raise its low end")
    return space


def trial_config(cfg: Config, params: Mapping[str, Any]) -> Config:
    """``cfg`` with a trial's parameters (``{"data": {"threshold": ...}, ...}`` or flat
    ``{"data/threshold": ...}`` / ``{"data.threshold": ...}``) applied, each converted to
    its field's type."""
    nested: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            nested.setdefault(key, {}).update(value)
        else:
            section, name = key.replace(".", "/").split("/", 1)
            nested.setdefault(section, {})[name] = value
    for section, values in nested.items():
        sub = getattr(cfg, section)
        known = {f.name for f in fields(sub)}
        if set(values) - known:
            raise ValueError(f"trial parameter(s) {sorted(set(values) - known)} are not keys of {section}")
        typed = {k: type(getattr(sub, k))(v) for k, v in values.items()}
        cfg = replace(cfg, **{section: replace(sub, **typed)})
    return cfg


def default_point(cfg: Config, space: Mapping[str, optuna.distributions.BaseDistribution]) -> dict[str, Any] | None:
    """The configuration's own values of the searched parameters, keyed like ``space``
    (``{"data/threshold": 0.01, ...}``); None, with a warning, when one lies outside its range."""
    point = {}
    for key, dist in space.items():
        section, name = key.split("/", 1)
        value = getattr(getattr(cfg, section), name)
        if not dist.low <= value <= dist.high:
            log.warning("tune.defaults_first: %s.%s=%s is outside the searched range [%s, %s]; the sweep runs "
                        "without a defaults trial", section, name, value, dist.low, dist.high)
            return None
        point[key] = value
    return point


def worker_resources(cfg: Config) -> dict[str, float]:
    """Resources of one Train worker: ``train.cpus_per_worker`` CPUs (+ 1 GPU)."""
    return {"CPU": cfg.train.cpus_per_worker, **({"GPU": 1} if cfg.train.use_gpu else {})}


def max_concurrent_trials(cfg: Config, cluster: Mapping[str, float]) -> int:
    """Concurrent trials: ``tune.max_concurrent`` capped by what ``cluster`` fits
    (``ray.cluster_resources()``); at least 1 (an autoscaler may still add nodes)."""
    need = {k: v * cfg.train.num_workers for k, v in worker_resources(cfg).items() if v}
    fits = min(math.floor(cluster.get(k, 0.0) / v + 1e-9) for k, v in need.items())
    if fits < 1:
        log.warning("one trial needs %s but the cluster has %s now; running 1 trial at a time", need,
                    {k: cluster.get(k, 0.0) for k in need})
    return max(1, min(cfg.tune.max_concurrent, fits))


def asha_scheduler(cfg: Config):
    """The sweep's ASHA scheduler: rungs every ``tune.reduction_factor``-fold number of
    epochs from ``tune.grace_period`` up to ``train.epochs``; at a rung, a trial whose
    :data:`METRIC` is below the ``1 - 1/reduction_factor`` quantile of the trials that
    reached the rung before it is stopped. Metric and mode come from the ``TuneConfig``."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr=EPOCHS_KEY, max_t=cfg.train.epochs, grace_period=cfg.tune.grace_period,
                         reduction_factor=cfg.tune.reduction_factor)
