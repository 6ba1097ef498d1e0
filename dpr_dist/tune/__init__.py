"""Hyperparameter sweeps of the DPR models: Ray Tune + Optuna + ASHA over Ray Train runs."""

from dpr_dist.tune.space import asha_scheduler, max_concurrent_trials, search_space, trial_config, worker_resources
from dpr_dist.tune.sweep import METRIC, run_sweep, sweep_dir
from dpr_dist.tune.trial import run_trial

__all__ = ["METRIC", "asha_scheduler", "max_concurrent_trials", "run_sweep", "run_trial", "search_space", "sweep_dir",
           "trial_config", "worker_resources"]
