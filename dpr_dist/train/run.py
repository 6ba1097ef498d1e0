"""Ray Train runs: NCF pre-training and the package models (``dpr pretrain``, ``dpr train``).

* :func:`pretrain` -- NCF pre-training (paper 4.1) as a ``TorchTrainer`` run named
  ``{train.name}-ncf``; returns the best checkpoint (by validation F1 of the top-``K``
  drugs).
* :func:`train` -- one package model (DPR-AG, DPR-WG, GNN, ablations, or a baseline of
  :mod:`dpr_dist.models.baselines`: NN, Package2vec, LDA, BR, DAM) as a run named
  ``{train.name}-{model}``, initialized from the pre-trained NCF, validated every epoch
  with the candidate procedure; writes the model directory
  (:mod:`dpr_dist.train.modeldir`) from the best checkpoint. Package2vec and LDA are
  fitted on the training packages first; NN (nothing to train) is validated on the
  driver, with no Ray Train run.

The prepared data comes from :mod:`dpr_dist.train.prepared`; the whole job of
``jobs/*.py`` (data, preparation, these runs, test metrics) is :mod:`dpr_dist.train.job`.

Runs checkpoint every epoch to ``train.storage_path`` (local or ``s3://``), survive
``train.max_failures`` worker failures by resuming from the last checkpoint, and a re-run
with the same name resumes instead of starting over (Ray Train restores the run's
checkpoint state from storage). ``docs/training.md`` has the details.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from dpr_dist.config import Config
from dpr_dist.data import io
from dpr_dist.data.documents import NOTE_VOCAB_SIZE
from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.eval.evaluate import encode_records
from dpr_dist.eval.metrics import mean_package_size
from dpr_dist.eval.package_csr import PackageCSR
from dpr_dist.models.baselines import BASELINES as PACKAGE_BASELINES
from dpr_dist.models.ncf import NCF
from dpr_dist.models.variants import VARIANTS, build_model
from dpr_dist.runtime import ensure_ray, seed_everything
from dpr_dist.train.collate import PATIENT_COLUMNS, RECORD_COLUMNS, package_csr
from dpr_dist.train.modeldir import save_model_dir
from dpr_dist.train.neighbourhood import Neighbourhood
from dpr_dist.train.prepared import Prepared, load_prepared, read_records, train_dataset
from dpr_dist.train.stored import checkpoint_state, stopped_early, stored_run
from dpr_dist.train.validation import ValidationData, validation_f1_sum
from dpr_dist.train.setup import RunSpec, is_trainable
from dpr_dist.train.worker import train_loop

#: Every model :func:`train` trains: NCF, the DPR variants and the package baselines.
MODELS = ("ncf", *VARIANTS, *PACKAGE_BASELINES)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- Ray Train
def run_name(cfg: Config, kind: str) -> str:
    """Name of the Ray Train run of ``kind`` (``ncf`` or a DPR variant)."""
    return f"{cfg.train.name}-{kind}"


def default_model_dir(cfg: Config, kind: str) -> str:
    """Where :func:`train` writes the model directory: ``{storage_path}/{name}-{kind}/model``."""
    return io.join(cfg.train.storage_path, run_name(cfg, kind), "model")


def _uri(cfg: Config, path: str) -> str:
    return f"s3://{path}" if io.is_s3(cfg.train.storage_path) and not path.startswith("s3://") else path


def fit(cfg: Config, kind: str, epochs: int, val: ValidationData, pretrained: dict | None = None,
        fail_once: dict | None = None, packages: PackageCSR | None = None,
        neighbourhood: Neighbourhood | None = None):
    """Run (or resume) the ``TorchTrainer`` of ``kind`` and return its ``ray.train.Result``.

    ``packages`` (the training packages) go to models with ``fit_packages``;
    ``neighbourhood`` (:func:`training_neighbourhood`) to the workers' ranking term and
    neighbourhood negatives.
    """
    import ray
    import ray.train
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from dpr_dist.train.tracking import tracking_callbacks

    tc = cfg.train
    done = stored_run(io.join(tc.storage_path, run_name(cfg, kind)))
    if done is not None:  # what a re-run would return, without starting a worker group that has nothing to do
        state = checkpoint_state(tc.storage_path, done.checkpoint)
        if state["next_epoch"] >= epochs:
            log.info("run %s has finished its %d epochs: reusing it", run_name(cfg, kind), epochs)
            return done
        if stopped_early(state["next_epoch"], state["best_epoch"], tc.patience):
            log.info("run %s stopped early after epoch %d (train.patience %d): reusing it", run_name(cfg, kind),
                     state["next_epoch"], tc.patience)
            return done
    prep = load_prepared(cfg.data.prepared, cfg.data.threshold)
    columns = PATIENT_COLUMNS if kind == "ncf" else RECORD_COLUMNS
    ds = train_dataset(prep.path, columns, cfg.data.rows_per_block)
    ingest = DataConfig.default_ingest_options()
    ingest.preserve_order = True  # deterministic shards and batch order (same seed, same run)
    storage_path, storage_fs = io.ray_storage(cfg.train.storage_path)
    resources = {"CPU": tc.cpus_per_worker, **({"GPU": 1} if tc.use_gpu else {}), **tc.worker_resources}
    spec = RunSpec(cfg=cfg, kind=kind, epochs=epochs, num_drugs=prep.num_drugs,
                   num_doc_words=prep.num_doc_words, val=ray.put(val),
                   pretrained=ray.put(pretrained) if pretrained is not None else None, fail_once=fail_once,
                   packages=ray.put(packages) if packages is not None else None,
                   neighbourhood=ray.put(neighbourhood) if neighbourhood is not None else None)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"spec": spec},
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=run_name(cfg, kind), storage_path=storage_path, storage_filesystem=storage_fs,
            failure_config=FailureConfig(max_failures=tc.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val_f1",
                                               checkpoint_score_order="max"),
            callbacks=tracking_callbacks(cfg, run_name(cfg, kind), epochs)),
        datasets={"train": ds},
        dataset_config=DataConfig(datasets_to_split=["train"], execution_options=ingest),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"run {run_name(cfg, kind)} finished without a checkpoint")
    return result


def training_neighbourhood(cfg: Config, index: CandidateIndex, prep: Prepared, always: bool = False
                           ) -> Neighbourhood | None:
    """The training patients' candidate neighbourhoods, when ``train.rank_weight`` or
    ``train.hard_negatives`` asks for them, or ``always`` (a sweep that searches the
    ranking weight); None otherwise.

    Built once on the driver from the candidate index of the training split (the
    pre-trained embeddings that also build the test-time candidate sets); the workers
    share one object-store copy (``N x rank_neighbors`` int64 plus the packages' drug ids).
    """
    tc = cfg.train
    if tc.rank_weight <= 0 and tc.hard_negatives <= 0 and not always:
        return None
    return Neighbourhood.build(index, tc.rank_neighbors, tc.hard_negatives, prep.relation, prep.cooc,
                               cfg.data.threshold, consensus=tc.rank_consensus)


def _read_checkpoint(result, best: bool) -> tuple[dict[str, torch.Tensor], dict, str]:
    ckpt = result.get_best_checkpoint("val_f1", "max") if best else result.checkpoint
    ckpt = ckpt or result.checkpoint
    with ckpt.as_directory() as d:
        state = torch.load(os.path.join(d, "model.pt"), map_location="cpu", weights_only=True)
        info = json.loads(open(os.path.join(d, "state.json")).read())
    return state, info, ckpt.path


def pretrain(cfg: Config, *, fail_once: dict | None = None) -> str:
    """Pre-train NCF (eqs. 4-5) on Ray Train, or resume the run of the same name.

    Returns:
        The URI of the best checkpoint (by validation F1 of NCF's top-``K`` drugs); its
        ``model.pt`` is the NCF state dict. Also recorded in
        ``{storage_path}/{name}-ncf/pretrained.json`` (read by :func:`train`).
    """
    ensure_ray()
    prep = load_prepared(cfg.data.prepared, cfg.data.threshold)
    train_tab = read_records(prep.path, "train")
    val = ValidationData(read_records(prep.path, "val"), None, mean_package_size(package_csr(train_tab)),
                         prep.relation, prep.cooc)
    result = fit(cfg, "ncf", cfg.train.pretrain_epochs, val, fail_once=fail_once)
    _, latest, _ = _read_checkpoint(result, best=False)
    _, best, path = _read_checkpoint(result, best=True)
    uri = _uri(cfg, path)
    record = {"checkpoint": uri, "epochs": cfg.train.pretrain_epochs, "best_epoch": best["best_epoch"],
              "best_val_f1": best["best_val_f1"], "history": latest["history"]}
    io.write_json(record, io.join(cfg.train.storage_path, run_name(cfg, "ncf"), "pretrained.json"))
    log.info("pre-trained NCF: best val F1 %.4f after epoch %d -> %s", best["best_val_f1"],
             best["best_epoch"] + 1, uri)
    return uri


def pretrained_checkpoint(cfg: Config) -> dict | None:
    """The record of a finished pre-training run with this config's name and epochs, if any."""
    uri = io.join(cfg.train.storage_path, run_name(cfg, "ncf"), "pretrained.json")
    if not io.exists(uri):
        return None
    record = io.read_json(uri)
    if record.get("epochs") != cfg.train.pretrain_epochs or not io.exists(io.join(record["checkpoint"], "model.pt")):
        return None
    return record


def pretrained_record(uri: str) -> dict:
    """The pre-training record of ``uri``: a pre-training run directory (its
    ``pretrained.json``, as :func:`pretrain` writes it) or an NCF checkpoint directory
    (``model.pt``); local or ``s3://``.

    Raises:
        FileNotFoundError: when ``uri`` holds neither.
    """
    uri = uri.rstrip("/")
    if io.exists(io.join(uri, "pretrained.json")):
        record = io.read_json(io.join(uri, "pretrained.json"))
        if io.exists(io.join(record["checkpoint"], "model.pt")):
            return record
        raise FileNotFoundError(f"{uri}/pretrained.json names the checkpoint {record['checkpoint']}, which has "
                                "no model.pt")
    if io.exists(io.join(uri, "model.pt")):
        return {"checkpoint": uri, "epochs": None, "best_epoch": None, "best_val_f1": None, "history": []}
    raise FileNotFoundError(f"pretrained {uri}: neither a pre-training run directory (pretrained.json) nor an NCF "
                            "checkpoint directory (model.pt)")


def load_ncf(uri: str, cfg: Config, num_drugs: int, num_doc_words: int) -> NCF:
    """The NCF of a pre-training checkpoint (``model.pt`` under ``uri``), eval mode."""
    fs, path = io.filesystem(io.join(uri, "model.pt"))
    with fs.open_input_file(path) as fh:
        state = torch.load(fh, map_location="cpu", weights_only=True)
    ncf = NCF(cfg.model, num_drugs, num_doc_words, NOTE_VOCAB_SIZE)
    ncf.load_state_dict(state)
    return ncf.eval()


def _validate_untrained(model, ncf: NCF, val: ValidationData, cfg: Config, num_doc_words: int) -> dict[str, Any]:
    """A model with nothing to train (NN) takes the pre-trained encoder and is validated
    here, the way the workers validate, rather than in a Ray Train run of one epoch that
    would only validate."""
    model.load_pretrained(ncf)
    t0 = time.perf_counter()
    rows = np.arange(val.table.num_rows)
    f1 = validation_f1_sum(model, val, rows, cfg.model.name, cfg, num_doc_words, torch.device("cpu"))
    f1 = f1 / rows.size if rows.size else 0.0
    epoch = {"epoch": 0, "loss": 0.0, "val_f1": f1, "samples_per_s": 0.0, "epoch_s": time.perf_counter() - t0,
             "records": 0}
    return {"best_epoch": 0, "best_val_f1": f1, "history": [epoch], "checkpoint": None}


def train(cfg: Config, model: str | None = None, *, pretrained: str | None = None, out: str | None = None,
          fail_once: dict | None = None) -> str:
    """Train one model on Ray Train and write its model directory.

    Pre-trains NCF first unless ``pretrained`` is given or a finished pre-training run of
    the same name exists.

    Args:
        cfg: The configuration.
        model: One of :data:`MODELS`: ``ncf``, a DPR variant (``ag``, ``wg``, ``gnn``,
            ablations) or a package baseline (``nn``, ``package2vec``, ``lda``, ``br``,
            ``dam``); default ``model.name``.
        pretrained: An NCF pre-training to start from (:func:`pretrained_record`: a
            pre-training run directory or a checkpoint directory), e.g. another run's.
        out: Model directory (default :func:`default_model_dir`).
        fail_once: Test hook making one worker exit once (see :class:`RunSpec`).

    Returns:
        The model directory's path or URI.
    """
    kind = model or cfg.model.name
    if kind not in MODELS:
        raise ValueError(f"train: unknown model {kind!r}; expected one of {list(MODELS)}")
    cfg = replace(cfg, model=replace(cfg.model, name=kind))
    ensure_ray()
    prep = load_prepared(cfg.data.prepared, cfg.data.threshold)
    if pretrained is not None:
        record = pretrained_record(pretrained)
    else:
        record = pretrained_checkpoint(cfg)
        if record is None:
            pretrain(cfg)
            record = pretrained_checkpoint(cfg)
    ncf = load_ncf(record["checkpoint"], cfg, prep.num_drugs, prep.num_doc_words)
    train_tab = read_records(prep.path, "train")
    bs = cfg.eval.batch_size
    with torch.no_grad():
        index = CandidateIndex(encode_records(ncf.encode, train_tab, prep.num_doc_words, bs),
                               package_csr(train_tab), train_tab["record_id"].to_pylist())
    top_k = mean_package_size(package_csr(train_tab))
    metrics: dict[str, Any] = {"pretrain": {k: record[k] for k in ("best_epoch", "best_val_f1", "history")}}
    dpr = None
    if kind != "ncf":
        val_tab = read_records(prep.path, "val")
        cands = index.query(encode_records(ncf.encode, val_tab, prep.num_doc_words, bs), k=cfg.eval.neighbors)
        seed_everything(cfg.train.seed)  # as the workers build it (NN keeps these weights)
        dpr = build_model(cfg.model, prep.num_drugs, prep.num_doc_words, NOTE_VOCAB_SIZE)
        val = ValidationData(val_tab, cands, top_k, prep.relation, prep.cooc)
        if is_trainable(dpr):
            packages = package_csr(train_tab) if hasattr(dpr, "fit_packages") else None
            result = fit(cfg, kind, cfg.train.epochs, val, ncf.state_dict(), fail_once, packages,
                         training_neighbourhood(cfg, index, prep))
            state, best, path = _read_checkpoint(result, best=True)
            _, latest, _ = _read_checkpoint(result, best=False)
            dpr.load_state_dict(state)  # parameters and fitted buffers
            metrics.update({"best_epoch": best["best_epoch"], "best_val_f1": best["best_val_f1"],
                            "history": latest["history"], "checkpoint": _uri(cfg, path)})
        else:
            metrics.update(_validate_untrained(dpr, ncf, val, cfg, prep.num_doc_words))
        dpr.eval()
        log.info("%s: best val F1 %.4f after epoch %d", kind, metrics["best_val_f1"],
                 metrics["best_epoch"] + 1)
    else:
        metrics.update({"best_epoch": record["best_epoch"], "best_val_f1": record["best_val_f1"],
                        "history": record["history"], "checkpoint": record["checkpoint"]})
    out = out or default_model_dir(cfg, kind)
    save_model_dir(out, cfg=cfg, model_name=kind, ncf=ncf, model=dpr, index=index, drugs=prep.drugs,
                   doc_words=prep.doc_words, relation=prep.relation, cooc=prep.cooc, manifest=prep.manifest,
                   metrics=metrics, top_k=top_k, descriptions=prep.descriptions)
    log.info("model directory -> %s", out)
    return out
