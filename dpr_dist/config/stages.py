"""The configuration sections of the stages after training: ``generation`` (paper section 6),
``tune`` and ``serve`` (frozen dataclasses; :class:`~dpr_dist.config.Config` holds one of each)."""

from __future__ import annotations

from dataclasses import dataclass


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
        rank_consensus: Search range of ``train.rank_consensus`` (the ranking targets'
            consensus share, within ``[0, 1]``); ``(0, 0)``, the default: not searched.
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
    rank_consensus: tuple[float, float] = (0.0, 0.0)


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
