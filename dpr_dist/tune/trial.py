"""One trial of a sweep, and what all the trials of a sweep share.

* :func:`shared_inputs`, :func:`trial_context` -- built once on the sweep's driver: the
  pre-trained NCF and its candidate index of the training patients, the validation
  candidate sets, the training split as a Ray Dataset and, when a trial may use the
  candidate-ranking term, the training neighbourhoods (:class:`TrialContext`, sent to the
  trials once through ``tune.with_parameters``);
* :func:`run_trial` -- a trial: one distributed Ray Train run (``TorchTrainer``) with the
  trial's parameters, the Ray Tune driver-function pattern of Ray Train V2, whose
  per-epoch reports reach Tune through :class:`EpochReport`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray
import ray.tune
import torch
from ray.tune.integration.ray_train import TuneReportCallback

from dpr_dist.config import Config
from dpr_dist.data import io
from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.eval.evaluate import encode_records
from dpr_dist.eval.metrics import mean_package_size
from dpr_dist.train.collate import RECORD_COLUMNS, package_csr
from dpr_dist.train.prepared import Prepared, read_records, train_dataset
from dpr_dist.train.run import load_ncf, training_neighbourhood
from dpr_dist.train.tracking import tracking_callbacks
from dpr_dist.train.validation import ValidationData
from dpr_dist.train.setup import RunSpec
from dpr_dist.train.worker import train_loop
from dpr_dist.tune.cleanup import RegisterPlacementGroup
from dpr_dist.tune.space import EPOCHS_KEY, trial_config, worker_resources


class EpochReport(TuneReportCallback):
    """``TuneReportCallback`` adding :data:`EPOCHS_KEY` (``epoch + 1``) to every result,
    so that ASHA counts Train epochs even in a trial that resumed its Train run."""

    def after_report(self, run_context, metrics, checkpoint) -> None:  # noqa: D102 - see class
        first = {**metrics[0], EPOCHS_KEY: int(metrics[0]["epoch"]) + 1}
        super().after_report(run_context, [first, *metrics[1:]], checkpoint)


@dataclass
class TrialContext:
    """What every trial shares (sent once through ``tune.with_parameters``).

    Attributes:
        cfg: The sweep's configuration (``model.name`` = the swept variant).
        dataset: The training split (``RECORD_COLUMNS``), a materialized Ray Dataset.
        val: Object ref of the :class:`ValidationData` (candidate sets from the NCF).
        pretrained: Object ref of the pre-trained NCF state dict.
        neighbourhood: Object ref of the training patients' candidate neighbourhoods (for
            ``train.rank_weight`` / ``train.hard_negatives``); None when no trial uses them.
        num_drugs, num_doc_words: Vocabulary sizes.
        runs: ``(path, filesystem)`` of ``<sweep>/runs``, where the trials' Train runs
            live (:func:`dpr_dist.data.io.ray_storage`, built on the driver: an S3
            filesystem carries the driver's endpoint and keys to the trials, whose
            environment may lack them).
        reaper: The sweep's :class:`~dpr_dist.tune.cleanup.PlacementGroupReaper`.
    """

    cfg: Config
    dataset: Any
    val: Any
    pretrained: Any
    neighbourhood: Any
    num_drugs: int
    num_doc_words: int
    runs: tuple[str, Any]
    reaper: Any


def train_run_name(trial_id: str, kind: str) -> str:
    """Name of a trial's Ray Train run (stable across restores, so the run resumes)."""
    return f"{trial_id}-{kind}"


def run_trial(config: dict, ctx: TrialContext) -> None:
    """A Tune trial: one distributed Ray Train run with the trial's parameters."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = trial_config(ctx.cfg, config)
    tc, kind = cfg.train, cfg.model.name
    spec = RunSpec(cfg=cfg, kind=kind, epochs=tc.epochs, num_drugs=ctx.num_drugs, num_doc_words=ctx.num_doc_words,
                   val=ctx.val, pretrained=ctx.pretrained, neighbourhood=ctx.neighbourhood)
    ingest = DataConfig.default_ingest_options()
    ingest.preserve_order = True  # deterministic shards, as in dpr_dist.train.run.fit
    path, fs = ctx.runs
    name = train_run_name(ray.tune.get_context().get_trial_id(), kind)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"spec": spec},
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                                     resources_per_worker=worker_resources(cfg)),
        run_config=RunConfig(
            name=name, storage_path=path,
            storage_filesystem=fs, failure_config=FailureConfig(max_failures=tc.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val_f1",
                                               checkpoint_score_order="max"),
            # the trackers first: ASHA may stop the trial on the result EpochReport hands to Tune
            callbacks=[*tracking_callbacks(cfg, name, tc.epochs, mlflow=False), EpochReport(),
                       RegisterPlacementGroup(ctx.reaper)]),
        datasets={"train": ctx.dataset},
        dataset_config=DataConfig(datasets_to_split=["train"], execution_options=ingest),
    )
    trainer.fit()


def shared_inputs(cfg: Config, prep: Prepared, ncf_uri: str) -> dict[str, Any]:
    """Prepared data, the pre-trained NCF, its candidate index of the training patients and
    NCF's ``K`` (for the trials' validation and the export of the best trial)."""
    ncf = load_ncf(ncf_uri, cfg, prep.num_drugs, prep.num_doc_words)
    train_tab = read_records(prep.path, "train")
    with torch.no_grad():
        index = CandidateIndex(encode_records(ncf.encode, train_tab, prep.num_doc_words, cfg.eval.batch_size),
                               package_csr(train_tab), train_tab["record_id"].to_pylist())
    return {"prep": prep, "ncf": ncf, "index": index, "top_k": mean_package_size(package_csr(train_tab)),
            "ncf_uri": ncf_uri}


def trial_context(cfg: Config, inputs: dict[str, Any], space: dict, runs: str, reaper) -> TrialContext:
    """What the trials share, built once: validation candidates, weights, training data
    and neighbourhoods."""
    prep, ncf = inputs["prep"], inputs["ncf"]
    # built once when a trial may use them; each trial builds the neighbours' graphs at its
    # own data.threshold and mixes its own ranking targets (Neighbourhood.at_threshold and
    # .with_consensus, in the worker)
    searched = {"train/rank_weight", "train/rank_consensus"} & set(space)
    hood = training_neighbourhood(cfg, inputs["index"], prep, always=bool(searched))
    val_tab = read_records(prep.path, "val")
    with torch.no_grad():
        u = encode_records(ncf.encode, val_tab, prep.num_doc_words, cfg.eval.batch_size)
    val = ValidationData(val_tab, inputs["index"].query(u, k=cfg.eval.neighbors), inputs["top_k"], prep.relation,
                         prep.cooc)
    ds = train_dataset(prep.path, RECORD_COLUMNS, cfg.data.rows_per_block)
    return TrialContext(cfg=cfg, dataset=ds, val=ray.put(val), pretrained=ray.put(ncf.state_dict()),
                        neighbourhood=ray.put(hood) if hood is not None else None, num_drugs=prep.num_drugs,
                        num_doc_words=prep.num_doc_words, runs=io.ray_storage(runs), reaper=reaper)
