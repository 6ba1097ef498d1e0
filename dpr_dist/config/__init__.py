"""One configuration object for data, models, training, evaluation, tuning and serving.

Frozen dataclasses loaded from YAML (``configs/*.yaml``) and overridden from the command
line with dotted ``section.key=value`` pairs::

    cfg = load_config("configs/demo.yaml", ["train.epochs=3", "model.gnn_layers=2"])

The same object is passed from the CLI to the Ray workers; no module reads globals. The
sections are defined in :mod:`dpr_dist.config.sections` (``data``, ``synth``, ``model``,
``train``, ``eval``) and :mod:`dpr_dist.config.stages` (``generation``, ``tune``,
``serve``); this module holds :class:`Config` and its loading, overriding and saving.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import yaml

from dpr_dist.config.sections import DataConfig, EvalConfig, ModelConfig, SynthConfig, TrainConfig
from dpr_dist.config.stages import RANK_BY, GenerationConfig, ServeConfig, TuneConfig, check_rank_by

__all__ = ["Config", "DataConfig", "EvalConfig", "GenerationConfig", "ModelConfig", "RANK_BY", "ServeConfig",
           "SynthConfig", "TrainConfig", "TuneConfig", "check_rank_by", "config_from_dict", "load_config",
           "save_config"]


@dataclass(frozen=True)
class Config:
    """The whole configuration; one object flows through every stage."""

    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
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
    """Convert a parsed value to the type of the field's current value; a value that would
    change on the way (``1.5`` for an integer, ``2`` for a flag, ``true`` for a number) is
    an error naming the field, not a silent rounding."""
    if isinstance(current, bool):
        if isinstance(value, str):
            low = value.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
        elif isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return bool(value)
        raise ValueError(f"{where}: expected a boolean, got {value!r}")
    if isinstance(current, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, (list, tuple)) or len(value) != len(current):
            raise ValueError(f"{where}: expected a list of {len(current)} values, got {value!r}")
        return tuple(_coerce(v, c, where) for v, c in zip(value, current))
    if isinstance(current, int):
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected an integer, got {value!r}") from None
    if isinstance(current, float):
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {value!r}")
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
