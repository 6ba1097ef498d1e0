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
    """Synthetic EMR generator (``dpr synth``), the embedded default data.

    ``second_condition``, ``antagonism_tolerance``, ``bundle_clash`` and ``second_core_prob``
    are :class:`~dpr_dist.data.synth.knobs.SynthKnobs`'s knobs of the same names (how many
    patients have two conditions, which patients' doctors avoid antagonistic pairs, and
    whether the two conditions' first-line bundles clash; docs/synthetic-data.md); the
    other knobs keep their defaults.
    """

    records: int = 3000
    drugs: int = 120
    conditions: int = 12
    notes: bool = True
    mean_package: float = 18.0
    second_condition: float = 0.4
    antagonism_tolerance: float = 0.0
    bundle_clash: float = 0.0
    second_core_prob: float = 0.0

    def knobs(self):
        """The generator's :class:`~dpr_dist.data.synth.knobs.SynthKnobs` for this config."""
        from dpr_dist.data.synth.knobs import SynthKnobs

        return SynthKnobs(second_condition=self.second_condition, antagonism_tolerance=self.antagonism_tolerance,
                          bundle_clash=self.bundle_clash, second_core_prob=self.second_core_prob)


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
        type_targets: Which labelled drug pairs the cross-entropy of eq. 21 runs over:
            ``"graph"`` (the paper) the labelled edges of each patient's own package graph;
            ``"relation"`` every labelled pair of ``R`` among the vocabulary's drugs, so that
            the edge attributes also learn the types that doctors keep out of packages
            (antagonism; docs/training.md, "Which pairs teach DPR-AG the interaction types").
        type_pairs: With ``type_targets: relation``, at most this many pairs of ``R`` per
            step, drawn uniformly (all of them when ``R`` has fewer).
        fast: DPR models compute package embeddings, scores and the loss through the fast
            path (:mod:`dpr_dist.models.fast`: the same function with shared and
            restructured work); False selects the straightforward reference code.
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
    type_targets: str = "graph"
    type_pairs: int = 4096
    fast: bool = True

    def __post_init__(self) -> None:
        if self.type_targets not in ("graph", "relation"):
            raise ValueError(f"ModelConfig.type_targets={self.type_targets!r} must be 'graph' or 'relation'")
        if self.type_pairs < 1:
            raise ValueError(f"ModelConfig.type_pairs={self.type_pairs} must be >= 1")


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
        worker_resources: Further Ray resources each worker reserves, e.g.
            ``{"trainer_slot": 1}``: with nodes started as ``ray start --resources
            '{"trainer_slot": 1}'`` each such node hosts one worker, which pins the
            workers to those nodes (``ScalingConfig(resources_per_worker=...)``;
            ``docs/scaling.md``). CPUs and GPUs are set by ``cpus_per_worker`` and
            ``use_gpu``, not here.
        storage_path: Where checkpoints and run state live (local or ``s3://``).
        name: Run name; re-running with the same name resumes.
        max_failures: Worker-failure retries (``FailureConfig``).
        seed: Seed of everything random.
        rank_weight: Weight ``w`` of the candidate-ranking term added to a package model's
            loss (:mod:`dpr_dist.models.ranking`): each training patient's own candidate
            set (the packages of its ``rank_neighbors`` nearest other training patients
            under the pre-trained embeddings) scored under its condition, with a listwise
            cross-entropy towards ``softmax(F1 / rank_tau)``. 0 (the default) trains with the
            paper's loss only (eqs. 15 / 21); the global-batch negatives are used either way.
            ``configs/demo.yaml`` and ``configs/bench.yaml`` set 1.0: ``docs/training.md`` has
            the measurements. Sweep trials (``dpr tune``) train with it too, or search it
            (``tune.rank_weight``).
        rank_tau: Temperature of the ranking targets.
        rank_neighbors: Size of a training patient's candidate neighbourhood (as
            ``eval.neighbors`` at test time).
        hard_negatives: How many of a patient's ``negative_ratio`` negatives are drawn
            from its candidate neighbourhood instead of the global batch (0: all from the
            global batch; measured worse on the demo data, ``docs/training.md``).
        tensorboard_dir: TensorBoard event files of every run under ``DIR/<run name>``
            ("" = off; a local or shared path, :mod:`dpr_dist.train.tracking`).
        mlflow_uri: MLflow tracking URI every run logs to ("" = off), e.g.
            ``http://mlflow:5000`` or ``sqlite:///runs/mlflow.db``.
        mlflow_experiment: The MLflow experiment of those runs.
        parallel_runs: How many independent runs ``dpr pipeline`` and ``dpr experiment``
            train at once, each its own Ray Train run and worker group
            (:mod:`dpr_dist.train.parallel`); runs beyond what the cluster holds wait for
            resources. 1 trains them one after another.
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
    worker_resources: dict[str, float] = field(default_factory=dict)
    storage_path: str = "runs/demo/ray"
    name: str = "dpr"
    max_failures: int = 2
    seed: int = 0
    rank_weight: float = 0.0
    rank_tau: float = 0.1
    rank_neighbors: int = 10
    hard_negatives: int = 0
    tensorboard_dir: str = ""
    mlflow_uri: str = ""
    mlflow_experiment: str = "dpr-dist"
    parallel_runs: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.parallel_runs, bool) or not isinstance(self.parallel_runs, int) or self.parallel_runs < 1:
            raise ValueError(f"TrainConfig.parallel_runs={self.parallel_runs!r} must be an integer >= 1")
        if self.tensorboard_dir.startswith("s3://"):
            raise ValueError(f"TrainConfig.tensorboard_dir={self.tensorboard_dir!r} must be a local or shared path "
                             "(TensorBoard event files are appended to, which S3 does not do)")
        if self.rank_weight < 0 or self.rank_tau <= 0 or self.rank_neighbors < 1:
            raise ValueError(f"TrainConfig: rank_weight={self.rank_weight} must be >= 0, rank_tau={self.rank_tau} "
                             f"> 0 and rank_neighbors={self.rank_neighbors} >= 1")
        if not 0 <= self.hard_negatives <= self.negative_ratio:
            raise ValueError(f"TrainConfig.hard_negatives={self.hard_negatives} must be in [0, negative_ratio="
                             f"{self.negative_ratio}]")
        res = self.worker_resources
        if not isinstance(res, dict):
            raise ValueError(f"TrainConfig.worker_resources={res!r} must be a mapping of resource name to amount")
        for name, amount in res.items():
            if not isinstance(name, str) or not name or name in ("CPU", "GPU"):
                raise ValueError(f"TrainConfig.worker_resources: resource name {name!r} must be a non-empty string "
                                 "other than CPU and GPU (set those with cpus_per_worker and use_gpu)")
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
                raise ValueError(f"TrainConfig.worker_resources[{name!r}]={amount!r} must be a number >= 0")


@dataclass(frozen=True)
class EvalConfig:
    """Candidate sets and metrics (paper 5.1.1)."""

    neighbors: int = 10
    batch_size: int = 1024


@dataclass(frozen=True)
class GenerationConfig:
    """Thresholds of the package-generation heuristic (paper 6). Ranks are 0-based.

    Attributes:
        rare_support: A drug in at most this fraction of ``S1``'s packages appears in
            "a small number of packages" (``0.2`` of 10 candidates: at most 2).
        low_rank_l: A drug with ``l_rank >= low_rank_l`` "ranks low in l".
        top_l: A drug with ``l_rank < top_l`` "ranks high in l" (the only drugs any rule
            adds); must not exceed ``low_rank_l``.
        unpopular_rank_L: A drug with ``L_rank >= unpopular_rank_L`` "ranks low in L".
        high_cooc: ``p_vd`` above this is a "high co-occurrence proportion".
        low_cooc: ``max(p_12, p_21)`` below this is a "low co-occurrence proportion"
            (default: the package-graph threshold of paper 5.1.2).
        max_add: At most this many drugs are added to one package by each stage (``S2``
            and ``S3``), best ``l`` rank first.
        min_size: Generated packages with fewer drugs are dropped.
        max_packages: Cap on ``|S|``. ``S1`` is never cut; generated packages (``S2``
            first, then ``S3``, each in candidate order) fill up to the cap.
    """

    rare_support: float = 0.2
    low_rank_l: int = 100
    top_l: int = 10
    unpopular_rank_L: int = 100
    high_cooc: float = 0.5
    low_cooc: float = 0.01
    max_add: int = 3
    min_size: int = 2
    max_packages: int = 30

    def __post_init__(self) -> None:
        checks = [
            ("rare_support", 0.0 <= self.rare_support <= 1.0, "must lie in [0, 1]"),
            ("top_l", self.top_l >= 0, "must be >= 0"),
            ("low_rank_l", self.low_rank_l >= self.top_l, "must be >= top_l"),
            ("unpopular_rank_L", self.unpopular_rank_L >= 0, "must be >= 0"),
            ("high_cooc", 0.0 <= self.high_cooc <= 1.0, "must lie in [0, 1]"),
            ("low_cooc", 0.0 <= self.low_cooc <= self.high_cooc, "must lie in [0, high_cooc]"),
            ("max_add", self.max_add >= 0, "must be >= 0"),
            ("min_size", self.min_size >= 1, "must be >= 1"),
            ("max_packages", self.max_packages >= 1, "must be >= 1"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ValueError(f"GenerationConfig.{name}={getattr(self, name)!r} {why}")


@dataclass(frozen=True)
class TuneConfig:
    """Ray Tune + Optuna sweep (``dpr tune``, :mod:`dpr_dist.tune`; ``docs/tuning.md``).

    Attributes:
        num_samples: Trials (each a Ray Train run of ``train.epochs`` epochs).
        max_concurrent: Upper bound on concurrent trials (lowered to what the cluster fits).
        grace_period: ASHA: epochs every trial runs before it can be stopped.
        reduction_factor: ASHA: a trial continues past a rung when its best validation F1
            is in the top ``1 / reduction_factor`` of the trials that reached it.
        defaults_first: Run the configuration's own values of the searched parameters as
            the first trial (Optuna's enqueued point), so a sweep measures the defaults under
            the same budget as its other trials; that trial's model is exported to
            ``<sweep>/defaults`` with its test metrics, next to ``best/``.
        name: Sweep name; re-running with the same name resumes the sweep.
        storage_path: Where sweeps live (local or ``s3://``); empty: ``train.storage_path``.
        threshold, negative_ratio, gnn_layers, dim, lr, l2: Search ranges ``(low, high)``
            of ``data.threshold``, ``train.negative_ratio``, ``model.gnn_layers``,
            ``model.edge_dim`` (the patient encoder's and drug embeddings' sizes are those
            of the shared NCF pre-training), ``train.lr`` and ``train.l2``.
        rank_weight: Search range of ``train.rank_weight`` (the candidate-ranking term);
            ``(0, 0)``, the default: not searched, every trial trains with
            ``train.rank_weight``.
    """

    num_samples: int = 16
    max_concurrent: int = 2
    grace_period: int = 1
    reduction_factor: int = 2
    defaults_first: bool = True
    name: str = "sweep"
    storage_path: str = ""
    threshold: tuple[float, float] = (0.01, 0.1)
    negative_ratio: tuple[int, int] = (1, 20)
    gnn_layers: tuple[int, int] = (1, 3)
    dim: tuple[int, int] = (16, 256)
    lr: tuple[float, float] = (1e-4, 1e-2)
    l2: tuple[float, float] = (1e-8, 1e-4)
    rank_weight: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class ServeConfig:
    """Ray Serve application.

    Attributes:
        ingress: How HTTP reaches the replicas. ``haproxy`` (default): Ray Serve's
            high-throughput mode, HAProxy on ``host:port`` in front of replicas that take
            HTTP themselves (``RAY_SERVE_ENABLE_HA_PROXY=1`` and
            ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``); ``proxy``: Ray's Python HTTP proxy
            actor, which forwards every request to a replica over Ray. The variables must
            be set where Ray starts: ``dpr serve`` sets them when it starts a local Ray,
            on a cluster the nodes carry them (``cluster/rayservice.yaml``).
            ``GET /v1/health`` reports the mode a replica runs in.
        rank_by: How each patient's candidate packages are ordered, and so which one is
            recommended (also by ``dpr score``): ``score``, the paper's rule (best model
            score first), or ``expected_f1``, the candidate of highest expected F1 against
            the others under ``softmax(scores / temperature)`` first
            (:mod:`dpr_dist.eval.mbr`; docs/results.md measures it).
        temperature: ``T`` of ``rank_by: expected_f1``, finite (the model-free medoid of
            ``T = inf`` is for evaluation, ``dpr evaluate --mbr inf``).
    """

    model_dir: str = "runs/demo/model"
    host: str = "127.0.0.1"
    port: int = 8000
    top_k: int = 5
    max_request_bytes: int = 65536
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.005
    num_replicas: int = 1
    ingress: str = "haproxy"
    rank_by: str = "score"
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.ingress not in ("haproxy", "proxy"):
            raise ValueError(f"ServeConfig.ingress={self.ingress!r} must be 'haproxy' or 'proxy'")
        check_rank_by(self.rank_by, self.temperature)


#: How candidate packages can be ordered (:attr:`ServeConfig.rank_by`).
RANK_BY = ("score", "expected_f1")


def check_rank_by(rank_by: str, temperature: float) -> None:
    """Raises ``ValueError`` for an unknown ``rank_by`` or a temperature that is not finite and > 0."""
    if rank_by not in RANK_BY:
        raise ValueError(f"serve.rank_by={rank_by!r} must be one of {list(RANK_BY)}")
    if not 0 < float(temperature) < float("inf"):
        raise ValueError(f"serve.temperature={temperature!r} must be a finite number > 0 (a softmax temperature)")


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
