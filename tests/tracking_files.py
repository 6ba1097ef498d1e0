"""Reading what the trackers wrote (``dpr_dist.train.tracking``): TensorBoard event files and
MLflow runs, for the tests of the loggers, of Ray Train runs and of sweeps."""

from __future__ import annotations

import struct
from collections import defaultdict
from pathlib import Path


def tensorboard_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of every event file under ``logdir``, in write order
    (the TFRecord framing: length, its CRC, the ``Event`` bytes, their CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for path in sorted(logdir.glob("events.out.tfevents.*"), key=lambda p: (p.stat().st_mtime_ns, p.name)):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos: pos + 8])
            event = Event.FromString(data[pos + 12: pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                out[v.tag].append((event.step, v.simple_value))
    return dict(out)


def mlflow_runs(uri: str, experiment: str = "dpr-dist") -> dict[str, dict]:
    """``{run name: {"status", "params", "metrics": {key: [(step, value)]}}}`` of an experiment."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    out = {}
    for run in client.search_runs([exp.experiment_id]):
        metrics = {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
                   for k in run.data.metrics}
        out[run.info.run_name] = {"status": run.info.status, "params": run.data.params, "metrics": metrics,
                                  "tags": run.data.tags}
    return out
