"""Freeing the resources of Train runs whose Tune trial was stopped.

ASHA stops a trial by ending its driver function's actor. The Ray Train controller that
the function started dies with it, and so do the controller's workers, but not the
workers' placement group: a placement group lives as long as its creator's *job*, here the
sweep's driver. Ray Train removes it from a ``PlacementGroupCleaner`` that asks the Ray
state API (the dashboard) whether the controller is alive. Where there is no dashboard
(the tests' session cluster, a cluster started without one) or it does not answer in time,
the reserved CPUs/GPUs stay taken and the next trials wait forever.

:class:`PlacementGroupReaper` removes them without the state API: a small actor of the
sweep's driver (no CPU) to which each Train run registers ``(controller, placement
group)`` whenever it starts a worker group (:class:`RegisterPlacementGroup`, a Train
callback); once a second it removes the placement groups of dead controllers. Where Ray
Train's own cleaner works as well, whichever comes first removes the group.
"""

from __future__ import annotations

import logging
import threading

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.train.v2._internal.execution.callback import WorkerGroupCallback
from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

log = logging.getLogger(__name__)


def _removed(pg: PlacementGroup) -> bool:
    return placement_group_table(pg).get("state") == "REMOVED"


def _alive(actor, timeout_s: float) -> bool:
    """Whether ``actor`` is alive (a busy actor that does not answer in time counts as alive)."""
    try:
        ray.get(actor.__ray_ready__.remote(), timeout=timeout_s)
    except RayActorError:
        return False
    except GetTimeoutError:
        return True
    return True


@ray.remote(num_cpus=0)
class PlacementGroupReaper:
    """Removes the placement groups of Train runs whose controller died (see module docs).

    Args:
        interval_s: Seconds between two checks.
        timeout_s: How long a controller may take to answer a liveness check.
    """

    def __init__(self, interval_s: float = 1.0, timeout_s: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._reaping = threading.Lock()
        self._groups: list[tuple] = []
        self._timeout_s = timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval_s,), daemon=True)
        self._thread.start()

    def register(self, controller, pg: PlacementGroup) -> None:
        """Watch ``pg``, the worker group placement group of ``controller``'s run."""
        with self._lock:
            self._groups.append((controller, pg))

    def watched(self) -> int:
        """Number of placement groups being watched."""
        with self._lock:
            return len(self._groups)

    def reap(self) -> int:
        """One check: forget removed groups, remove those of dead controllers.

        Returns:
            How many placement groups were removed.
        """
        with self._reaping:
            with self._lock:
                groups = list(self._groups)
            done, removed = [], 0
            for controller, pg in groups:
                if _removed(pg):  # the run shut its worker group down itself
                    done.append(pg.id)
                elif not _alive(controller, self._timeout_s):
                    log.info("removing placement group %s of a stopped Train run", pg.id.hex())
                    remove_placement_group(pg)
                    done.append(pg.id)
                    removed += 1
            with self._lock:  # dropping the handles lets finished controllers exit
                self._groups = [(c, pg) for c, pg in self._groups if pg.id not in done]
            return removed

    def stop(self) -> None:
        """Stop checking (pending groups are left to their job's end)."""
        self._stop.set()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.reap()


class RegisterPlacementGroup(WorkerGroupCallback):
    """Train callback registering every worker group's placement group with a reaper."""

    def __init__(self, reaper) -> None:
        self._reaper = reaper

    def after_worker_group_start(self, worker_group) -> None:  # noqa: D102 - see class
        pg = worker_group.get_worker_group_state().placement_group_handle.placement_group
        ray.get(self._reaper.register.remote(ray.get_runtime_context().current_actor, pg))
