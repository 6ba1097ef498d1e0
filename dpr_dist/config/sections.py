"""The configuration sections of the data and the models: ``data``, ``synth``, ``model``,
``train`` and ``eval`` (frozen dataclasses; :class:`~dpr_dist.config.Config` holds one of each)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
        type_warmup: With ``type_targets: relation``, steps of the type cross-entropy alone
            (Adam at ``train.lr``, on the edge MLP and ``Q``) before the first epoch.
            Trained jointly with the ranking losses from the start, the type head stays at
            the class prior for hundreds of steps; a few hundred steps alone (about a
            second) teach it the types, and the joint loss then keeps them. On the bench
            data this costs DPR-AG 0.011-0.013 test F1 (docs/training.md). 0: no warm-up.
        aggr: How a message-passing layer (GNN, DPR-WG, DPR-AG and their ablations)
            combines the messages into a node: ``"sum"``, the paper's (eqs. 12 and 19), or
            ``"mean"``, the sum divided by the node's in-degree. A package graph is dense,
            so the sum grows with the package. In DPR-AG, whose messages are linear in
            unbounded edge attributes, it outweighs the node's own term ``W0 h_u`` about
            11 times at initialization in a 12-drug package of the bench data (before the
            patient's mask, which scales it by factors in (0, 1)); the mean keeps the two
            level (docs/training.md, "Mean aggregation").
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
    type_warmup: int = 0
    aggr: str = "sum"
    fast: bool = True

    def __post_init__(self) -> None:
        if self.type_targets not in ("graph", "relation"):
            raise ValueError(f"ModelConfig.type_targets={self.type_targets!r} must be 'graph' or 'relation'")
        if self.aggr not in ("sum", "mean"):
            raise ValueError(f"ModelConfig.aggr={self.aggr!r} must be 'sum' (eqs. 12, 19) or 'mean'")
        if self.type_pairs < 1:
            raise ValueError(f"ModelConfig.type_pairs={self.type_pairs} must be >= 1")
        if self.type_warmup < 0 or (self.type_warmup and self.type_targets != "relation"):
            raise ValueError(f"ModelConfig.type_warmup={self.type_warmup} must be >= 0, and 0 unless "
                             "type_targets is 'relation' (it trains on the pairs of R)")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and the Ray Train run.

    Attributes:
        epochs: Training epochs of the package model (the most it trains, with ``patience``).
        pretrain_epochs: Epochs of NCF pre-training (eqs. 4-5) (the most, with ``patience``).
        patience: Early stopping: a run (pre-training or package model) ends once this many
            epochs in a row have not raised its best validation F1; the best epoch's
            checkpoint is kept either way. 0 (the default) trains every epoch. Every rank
            sees the same (all-reduced) validation F1, so all ranks stop at the same epoch.
        ema_decay: Validate, keep and ship an exponential moving average of the weights,
            ``avg <- decay * avg + (1 - decay) * theta`` after every optimiser step
            (:mod:`dpr_dist.train.averaging`), instead of the last step's weights; it applies
            to every trained model (pre-training included). The optimiser still steps the
            raw weights, and checkpoints keep both so a resumed run equals an uninterrupted
            one. 0 (the default) trains as the paper does; ``docs/training.md`` has the
            measurements.
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
        rank_consensus: Share ``beta`` of a ranking target taken from the candidate's mean F1
            against the *other* candidates of the set, the rest from its F1 against the
            patient's own package: ``(1 - beta) F1(c, own) + beta mean_c' F1(c, c')``. The
            F1 against one realized package is a one-sample estimate of the candidate's
            expected F1 for the patient; the neighbours' packages are more samples of what
            similar patients get (:meth:`dpr_dist.train.neighbourhood.Neighbourhood.candidates`).
            0 (the default) uses the own package alone.
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
    patience: int = 0
    ema_decay: float = 0.0
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
    rank_consensus: float = 0.0
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
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise ValueError(f"TrainConfig.patience={self.patience!r} must be an integer >= 0 (0: no early stopping)")
        if isinstance(self.ema_decay, bool) or not isinstance(self.ema_decay, (int, float)) \
                or not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay={self.ema_decay!r} must be a number in [0, 1) (0: no averaging)")
        if not 0.0 <= self.rank_consensus <= 1.0:
            raise ValueError(f"TrainConfig.rank_consensus={self.rank_consensus} must be in [0, 1]")
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
