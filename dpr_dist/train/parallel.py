"""Training several independent runs at once: the runs of ``dpr pipeline`` and ``dpr experiment``.

Each run is its own Ray Train run (its own worker group, checkpoints and model directory), so
runs that do not depend on each other can train side by side: with
``train.parallel_runs = P``, :func:`train_runs` keeps up to ``P`` of them in flight, each
driven by a Ray task that calls :func:`dpr_dist.train.run.train` (a ``TorchTrainer`` launched
from a task, as Ray Tune launches its trials). The task itself reserves no CPU; the worker
groups queue for the cluster's resources, so ``P`` larger than the cluster can hold costs
nothing but waiting. With ``P = 1`` the runs train one after another in the calling
process, exactly as before.

Every run is seeded by its own configuration, so its result does not depend on which runs
train beside it. A run that fails does not stop the others in flight: they finish (or stay
checkpointed), the runs not yet started are not started, and the error names every failed
run; re-running resumes the failed ones and reuses the finished ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from dpr_dist.config import Config
from dpr_dist.runtime import ensure_ray
from dpr_dist.train.run import train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRequest:
    """One run to train: ``train(cfg, model, pretrained=pretrained)``."""

    cfg: Config
    model: str
    pretrained: str | None = None

    @property
    def label(self) -> str:
        return f"{self.cfg.train.name}-{self.model}"


class RunsFailed(RuntimeError):
    """Some of the runs of :func:`train_runs` failed.

    Attributes:
        errors: Each failed run's label (``{train.name}-{model}``) and its error.
        not_started: The labels of the runs not started after the first failure.
    """

    def __init__(self, errors: dict[str, BaseException], not_started: list[str]) -> None:
        self.errors, self.not_started = errors, not_started
        lines = "; ".join(f"{label}: {type(e).__name__}: {e}" for label, e in errors.items())
        rest = f"; not started: {', '.join(not_started)}" if not_started else ""
        super().__init__(f"{len(errors)} run(s) failed ({lines}){rest}; re-running resumes them")


def _train(request: RunRequest) -> str:
    return train(request.cfg, request.model, pretrained=request.pretrained)


def train_runs(requests: Sequence[RunRequest], parallel: int = 1,
               on_done: Callable[[int, str], None] | None = None) -> list[str]:
    """Train ``requests``, up to ``parallel`` at once, and return their model directories in order.

    Args:
        requests: The runs; they must not depend on each other (pre-train NCF first).
        parallel: Runs in flight at once (``train.parallel_runs``); 1 trains them one
            after another in this process.
        on_done: Called in this process with a request's index and model directory as
            soon as it has finished (the runs in flight go on meanwhile), e.g. to evaluate
            it.

    Returns:
        The model directory of each request, in the order of ``requests``.

    Raises:
        RunsFailed: when any run failed (after the runs in flight have ended).
    """
    if parallel < 1:
        raise ValueError(f"train_runs: parallel={parallel} must be >= 1")
    if parallel == 1 or len(requests) <= 1:
        dirs = []
        for i, request in enumerate(requests):
            dirs.append(_train(request))
            if on_done is not None:
                on_done(i, dirs[-1])
        return dirs
    import ray

    ensure_ray()
    task = ray.remote(num_cpus=0, max_retries=0)(_train)  # Ray Train retries the workers itself
    queue = list(enumerate(requests))
    in_flight: dict[ray.ObjectRef, int] = {}
    dirs: list[str | None] = [None] * len(requests)
    errors: dict[str, BaseException] = {}
    while queue or in_flight:
        while queue and not errors and len(in_flight) < parallel:
            i, request = queue.pop(0)
            log.info("run %s: started (%d in flight)", request.label, len(in_flight) + 1)
            in_flight[task.options(name=f"train:{request.label}").remote(request)] = i
        if not in_flight:
            break  # a run failed: the rest are not started
        done, _ = ray.wait(list(in_flight), num_returns=1)
        i = in_flight.pop(done[0])
        try:
            dirs[i] = ray.get(done[0])
        except Exception as e:  # noqa: BLE001 - collected, raised together below
            errors[requests[i].label] = getattr(e, "cause", None) or e
            log.error("run %s failed (%s); the runs in flight go on, no new run starts", requests[i].label,
                      type(errors[requests[i].label]).__name__)
            continue
        log.info("run %s: finished", requests[i].label)
        if on_done is not None:
            on_done(i, dirs[i])
    if errors:
        raise RunsFailed(errors, [r.label for _, r in queue])
    return [d for d in dirs if d is not None]
