"""Results of earlier experiment runs, reused where their model directories are gone.

``dpr experiment`` writes one row per run into ``report/results.json`` (test metrics, the
run's name, seed and settings). Each row also carries two fingerprints:

``data_fingerprint``
    SHA-256 of the prepared data the run was trained and tested on: every split's record
    ids and packages (:func:`data_fingerprint`).
``config_fingerprint``
    SHA-256 of the run's configuration: every setting that changes what is trained or how
    it is evaluated, without paths, names and scheduling (:func:`config_fingerprint`).

Given such files (``dpr experiment --reuse-results FILE``), a run that has no model directory
under the output directory takes its row from them instead of being trained again, if both
fingerprints match (and, with ``--mbr``, the row has the expected-F1 pick at the same
temperature). A row whose fingerprint differs is not used, and the log says which one
differs. This is how seeds trained by different jobs or machines end up in one report, and
how a report is rebuilt after its runs were cleaned up. Rows are reused as they are: the
code that measured them is the code of the run that wrote them (``trained_at`` gives the
time its model directory was written). The sections that need a model itself (``fig8``,
``case``, ``generation``) still need its model directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import cached_property
from typing import Any, Sequence

from dpr_dist.config import Config
from dpr_dist.data import io
from dpr_dist.train.prepared import read_records

log = logging.getLogger(__name__)

#: Settings that do not change a run's results: where things are, what the run is called,
#: how runs are scheduled and logged. Everything else of ``data``, ``model``, ``train`` and
#: ``eval`` is part of the configuration fingerprint (the data themselves are fingerprinted
#: apart, so the ``synth`` section and input paths are left out).
NEUTRAL = {
    "data": ("emr", "ddi", "drug_vocab", "prepared", "rows_per_block"),
    "model": ("name",),  # the run's model is the row's "model"
    "train": ("storage_path", "name", "max_failures", "tensorboard_dir", "mlflow_uri", "mlflow_experiment",
              "parallel_runs"),
    "eval": ("batch_size",),
}
SECTIONS = ("data", "model", "train", "eval")
#: Settings added after fingerprints were first recorded, with their defaults. A setting at
#: its default is left out of the fingerprint, so rows measured before it existed (which
#: trained as the default does) still match; any other value is part of it.
ADDED_LATER = {
    "model": {"type_targets": "graph", "type_pairs": 4096, "type_warmup": 0, "aggr": "sum"},
    "train": {"rank_consensus": 0.0, "patience": 0, "ema_decay": 0.0},
}


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def config_fingerprint(cfg: Config) -> str:
    """SHA-256 (hex) of the settings of ``cfg`` that change a run's results (see :data:`NEUTRAL`
    and :data:`ADDED_LATER`)."""
    d = cfg.to_dict()

    def counts(section: str, key: str, value: Any) -> bool:
        later = ADDED_LATER.get(section, {})
        return key not in NEUTRAL.get(section, ()) and not (key in later and value == later[key])

    return _sha({s: {k: v for k, v in d[s].items() if counts(s, k, v)} for s in SECTIONS})


def data_fingerprint(prepared: str) -> str:
    """SHA-256 (hex) of the prepared data's splits: each record's id and package (drug ids),
    by record id, so the order of the files does not count.

    Two preparations of the same inputs with the same seed give the same fingerprint; a
    different split, vocabulary or input gives another.
    """
    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        t = read_records(prepared, split, ("record_id", "drug_ids")).sort_by("record_id")  # not file order
        h.update(json.dumps([split, t.column("record_id").to_pylist(), t.column("drug_ids").to_pylist()],
                            separators=(",", ":")).encode())
    return h.hexdigest()


def load_results(paths: Sequence[str]) -> dict[tuple[str, str], dict]:
    """Rows of ``results.json`` files by ``(model, run)``; a later file's row replaces an earlier one's.

    Raises:
        FileNotFoundError: naming a missing file.
        ValueError: naming the file and row that is not a results row.
    """
    rows: dict[tuple[str, str], dict] = {}
    for path in paths:
        if not io.exists(path):
            raise FileNotFoundError(f"results file {path} does not exist")
        data = io.read_json(path)
        if not isinstance(data, list):
            raise ValueError(f"results file {path}: expected a list of rows (a report's results.json)")
        for i, row in enumerate(data):
            missing = [k for k in ("model", "run", "seed", "data_fingerprint", "config_fingerprint") if k not in row]
            if missing:
                raise ValueError(f"results file {path}, row {i}: no {', '.join(missing)} (written before fingerprints "
                                 "were recorded? then it cannot be reused)")
            rows[(row["model"], row["run"])] = {"reused_from": path, **row}  # keeps the first file it came from
    return rows


def match(row: dict | None, data_fp: str, config_fp: str, mbr: float | None) -> str | None:
    """Why ``row`` cannot stand for a run with these fingerprints (None: it can).

    Args:
        row: A row of :func:`load_results` (None: there is none).
        data_fp, config_fp: The run's fingerprints.
        mbr: The expected-F1 temperature the row must have been evaluated at (None: any).
    """
    if row is None:
        return "no row"
    if row["data_fingerprint"] != data_fp:
        return "measured on other data"
    if row["config_fingerprint"] != config_fp:
        return "trained with another configuration"
    if mbr is not None and row["model"] != "ncf" and (row.get("mbr") or {}).get("mbr_temperature") != mbr:
        return f"has no expected-F1 pick at T = {mbr:g}"
    return None


class Reuse:
    """The reusable rows of earlier results files for one experiment call.

    Args:
        paths: ``results.json`` files (local or ``s3://``).
        prepared: The prepared data of this call.
        mbr: The expected-F1 temperature of this call (None: off).
    """

    def __init__(self, paths: Sequence[str], prepared: str, mbr: float | None) -> None:
        self.rows = load_results(paths)
        self.prepared, self.mbr = prepared, mbr
        self.rejected: dict[str, str] = {}  # "{run}-{model}": why its row was not used

    @cached_property
    def data_fp(self) -> str:
        """This call's data fingerprint, computed on first use."""
        return data_fingerprint(self.prepared)

    def get(self, model: str, cfg: Config) -> dict | None:
        """The row of ``model`` trained with ``cfg`` (its name and settings), if it can be reused."""
        row = self.rows.get((model, cfg.train.name))
        why = match(row, self.data_fp, config_fingerprint(cfg), self.mbr)
        if why is None:
            return row
        if row is not None and f"{cfg.train.name}-{model}" not in self.rejected:
            self.rejected[f"{cfg.train.name}-{model}"] = why
            log.warning("not reusing %s-%s from %s: %s", cfg.train.name, model, row["reused_from"], why)
        return None
