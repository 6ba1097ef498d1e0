"""One configuration object for data, models, training, evaluation, tuning and serving.

Frozen dataclasses loaded from YAML (``configs/*.yaml``) and overridden from the command
line with dotted ``section.key=value`` pairs::

    cfg = load_config("configs/demo.yaml", ["train.epochs=3", "model.gnn_layers=2"])

The same object is passed from the CLI to the Ray workers; no module reads globals.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import yaml


@dataclass(frozen=True)
class DataConfig:
    """Where the data lives and how records become package graphs (paper 3.1, 4.2.1).

    Attributes:
        emr: EMR records in the data contract (file, directory or ``s3://`` URI).
        ddi: Drug interactions in the data contract.
        drug_vocab: Optional DrugBank vocabulary CSV (common names and synonyms) used to
            align EMR drug names beyond the interaction table's own names.
        prepared: Output directory of ``dpr prepare`` (input of training).
        threshold: Co-occurrence proportion above which an unlabelled pair gets an edge.
        build_threshold: Lowest threshold graphs are stored at; a run may raise
            ``threshold`` above it without rebuilding (edges keep their ``p``).
        note_max_len: Admission notes are padded / cut to this many characters.
        split: Train / validation / test fractions, assigned per patient.
        min_drugs: Records with fewer distinct normalized drugs are rejected.
        rows_per_block: Target rows per Ray Data block (parallelism of prepare).
    """

    emr: str = "data/demo/emr"
    ddi: str = "data/demo/ddi.parquet"
    drug_vocab: str = ""
    prepared: str = "runs/demo/prepared"
    threshold: float = 0.01
    build_threshold: float = 0.01
    note_max_len: int = 200
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    min_drugs: int = 2
    rows_per_block: int = 8192


@dataclass(frozen=True)
class SynthConfig:
    """Synthetic EMR generator (``dpr synth``), the embedded default data."""

    records: int = 3000
    drugs: int = 120
    conditions: int = 12
    notes: bool = True
    mean_package: float = 18.0


@dataclass(frozen=True)
class ModelConfig:
    """Model family and dimensions (paper 5.1.2 defaults).

    Attributes:
        name: One of ``ncf``, ``nn``, ``package2vec``, ``lda``, ``br``, ``dam``, ``gnn``,
            ``wg``, ``ag``, ``wg_context``, ``wg_type``, ``ag_mask``, ``ag_type``.
        mlp_out: Output size of the disease-document MLP (eq. 1).
        char_dim: Character embedding size of the note LSTM (eq. 2).
        lstm_hidden: Hidden size of the note LSTM (eq. 2).
        drug_dim: Drug embedding size (= patient embedding size, mlp_out + lstm_hidden).
        hidden: Hidden width of every MLP.
        edge_dim: Size of the DPR-AG edge attribute vectors (eq. 16).
        gnn_layers: Number of message-passing layers (Table 6 uses 1 and 2).
        ce_weight: Weight of the interaction-type cross-entropy in eq. 21.
    """

    name: str = "ag"
    mlp_out: int = 32
    char_dim: int = 32
    lstm_hidden: int = 32
    drug_dim: int = 64
    hidden: int = 128
    edge_dim: int = 32
    gnn_layers: int = 1
    ce_weight: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and the Ray Train run.

    Attributes:
        epochs: Training epochs of the package model.
        pretrain_epochs: Epochs of NCF pre-training (eqs. 4-5).
        batch_size: Global mini-batch size (split across workers).
        lr: Adam learning rate.
        l2: Weight of the L2 term ``lambda ||Theta||^2``.
        negative_ratio: Negative samples per positive (BPR).
        num_workers: Ray Train workers (DDP ranks).
        use_gpu: Train on GPUs (NCCL) instead of CPUs (gloo).
        cpus_per_worker: CPUs reserved per worker.
        storage_path: Where checkpoints and run state live (local or ``s3://``).
        name: Run name; re-running with the same name resumes.
        max_failures: Worker-failure retries (``FailureConfig``).
        seed: Seed of everything random.
    """

    epochs: int = 5
    pretrain_epochs: int = 3
    batch_size: int = 256
    lr: float = 1e-3
    l2: float = 1e-6
    negative_ratio: int = 10
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    storage_path: str = "runs/demo/ray"
    name: str = "dpr"
    max_failures: int = 2
    seed: int = 0


@dataclass(frozen=True)
class EvalConfig:
    """Candidate sets and metrics (paper 5.1.1)."""

    neighbors: int = 10
    batch_size: int = 1024


@dataclass(frozen=True)
class TuneConfig:
    """Ray Tune + Optuna sweep."""

    num_samples: int = 16
    max_concurrent: int = 2
    grace_period: int = 1
    threshold: tuple[float, float] = (0.01, 0.1)
    negative_ratio: tuple[int, int] = (1, 20)
    gnn_layers: tuple[int, int] = (1, 3)
    dim: tuple[int, int] = (16, 256)
    lr: tuple[float, float] = (1e-4, 1e-2)
    l2: tuple[float, float] = (1e-8, 1e-4)


@dataclass(frozen=True)
class ServeConfig:
    """Ray Serve application."""

    model_dir: str = "runs/demo/model"
    host: str = "127.0.0.1"
    port: int = 8000
    top_k: int = 5
    max_request_bytes: int = 65536
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.005
    num_replicas: int = 1


@dataclass(frozen=True)
class Config:
    """The whole configuration; one object flows through every stage."""

    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), suitable for YAML/JSON."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def with_overrides(self, overrides: Sequence[str]) -> "Config":
        """Return a copy with ``section.key=value`` overrides applied."""
        return _apply_overrides(self, overrides)


def _coerce(value: Any, current: Any, where: str) -> Any:
    """Convert a parsed value to the type of the field's current value."""
    if isinstance(current, bool):
        if isinstance(value, str):
            low = value.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError(f"{where}: expected a boolean, got {value!r}")
        return bool(value)
    if isinstance(current, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, (list, tuple)) or len(value) != len(current):
            raise ValueError(f"{where}: expected a list of {len(current)} values, got {value!r}")
        return tuple(_coerce(v, c, where) for v, c in zip(value, current))
    if isinstance(current, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected an integer, got {value!r}") from None
    if isinstance(current, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(current, str):
        return str(value)
    return value


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown config key(s) in {where or 'top level'}: {sorted(unknown)}")
    base = cls()
    kwargs = {}
    for name, value in data.items():
        current = getattr(base, name)
        key = f"{where}.{name}" if where else name
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{key}: expected a mapping")
            kwargs[name] = _from_dict(type(current), value, key)
        else:
            kwargs[name] = _coerce(value, current, key)
    return replace(base, **kwargs)


def _apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form section.key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        value: Any = yaml.safe_load(raw) if raw != "" else ""
        cfg = _set(cfg, parts, value, key)
    return cfg


def _set(obj: Any, parts: list[str], value: Any, key: str) -> Any:
    name = parts[0]
    if not is_dataclass(obj) or name not in {f.name for f in fields(obj)}:
        raise ValueError(f"unknown config key {key!r}")
    current = getattr(obj, name)
    if len(parts) == 1:
        if is_dataclass(current):
            raise ValueError(f"{key!r} is a section; set one of its keys")
        return replace(obj, **{name: _coerce(value, current, key)})
    return replace(obj, **{name: _set(current, parts[1:], value, key)})


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a config from YAML (or defaults when ``path`` is None) and apply overrides.

    Args:
        path: YAML file whose top-level keys are sections (``data``, ``model``, ...).
        overrides: ``section.key=value`` strings, applied in order.

    Returns:
        The frozen :class:`Config`.

    Raises:
        ValueError: on an unknown key or a value of the wrong type, naming the key.
    """
    data: dict[str, Any] = {}
    if path is not None:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: top level must be a mapping of sections")
    cfg = _from_dict(Config, data, "")
    return _apply_overrides(cfg, overrides)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write ``cfg`` as YAML (readable by :func:`load_config`)."""
    with open(path, "w") as fh:
        yaml.safe_dump(cfg.to_dict(), fh, sort_keys=False)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` from :meth:`Config.to_dict` output."""
    return _from_dict(Config, data, "")
