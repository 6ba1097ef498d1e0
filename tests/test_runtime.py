"""Starting a local Ray the way every ``dpr`` command and job does."""

from __future__ import annotations

import os
import subprocess
import sys

_SCRIPT = """
import ray
from ray.util.state import list_actors
from dpr_dist.runtime import ensure_ray

ensure_ray(num_cpus=1)

@ray.remote(num_cpus=0)
class Probe:
    def ping(self):
        return 1

probe = Probe.remote()
ray.get(probe.ping.remote())
# the state API Ray Train's PlacementGroupCleaner polls for its controller
gcs = ray.get_runtime_context().gcs_address  # explicit: the test session's own cluster also runs
states = [a.state for a in list_actors(address=gcs, filters=[("class_name", "=", "Probe")], timeout=30)]
print("STATES", states)
# a worker finds its own cluster even while another local Ray runs (the test session's)
import os
@ray.remote(num_cpus=0)
def address():
    return os.environ.get("RAY_ADDRESS")
print("WORKER_ADDRESS_OK", ray.get(address.remote()) == gcs)
"""


def test_a_local_ray_serves_the_state_api_that_ray_train_polls_to_its_workers(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "STATES ['ALIVE']" in done.stdout
    assert "WORKER_ADDRESS_OK True" in done.stdout
