"""One command from data to results (``dpr pipeline``).

:func:`pipeline` runs every stage for a list of models, everything under one output
directory ``DIR`` (local or ``s3://``)::

    DIR/prepared/            dpr prepare of the given EMR and interaction inputs
    DIR/runs/                Ray Train runs: {train.name}-ncf (pre-training), {train.name}-{model}
    DIR/runs/{name}-{model}/model   each model's directory (test metrics added)
    DIR/metrics.json         {model: metrics on the test split}
    DIR/metrics.md           the same as a Markdown table
    DIR/predictions.parquet  record_id, model, drugs (the recommended package as drug names)

NCF is pre-trained first; then every model is trained by :func:`dpr_dist.train.run.train`
from that pre-training, ``train.parallel_runs`` of them at once
(:mod:`dpr_dist.train.parallel`), and evaluated by
:func:`dpr_dist.eval.evaluate.evaluate_models` on its own model directory, so a baseline
is exactly what ``dpr train --model NAME`` + ``dpr evaluate`` give. ``popularity`` (the
``K`` most frequent training drugs) is computed from the NCF directory.

The metrics of each model are those of :func:`dpr_dist.eval.metrics.summarize`
(precision, recall, F1, Jaccard, antagonism rate of the recommendations, the true
packages' antagonism rate, the oracle ceiling of the candidate sets and F1 as a fraction
of it) plus the validation F1 of the kept epoch; ``predictions.parquet`` holds what they
were computed from, so anyone can recompute them against the test split's true drugs.

Re-running with the same ``DIR`` and inputs reuses the prepared data and resumes the runs
(finished runs train no further epochs).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any, Sequence

import pyarrow as pa

from dpr_dist.config import Config
from dpr_dist.data import io
from dpr_dist.eval.evaluate import evaluate_models, format_table
from dpr_dist.train.modeldir import load_model_dir, update_metrics
from dpr_dist.train.prepared import read_records
from dpr_dist.train.parallel import RunRequest, train_runs
from dpr_dist.train.run import MODELS, pretrain, pretrained_checkpoint

log = logging.getLogger(__name__)

#: The models of ``dpr pipeline`` by default: paper Table 4.
PIPELINE_MODELS = ("ncf", "nn", "package2vec", "lda", "br", "dam", "gnn", "wg", "ag")

#: Models :func:`pipeline` accepts: every trainable model plus ``popularity``.
KNOWN_MODELS = (*MODELS, "popularity")

#: Metric columns of ``metrics.md`` (all of them are in ``metrics.json``).
TABLE_KEYS = ("precision", "recall", "f1", "jaccard", "antagonism_rate", "true_antagonism_rate", "ceiling_f1",
              "f1_of_ceiling")


def parse_models(models: str | Sequence[str]) -> tuple[str, ...]:
    """Model names from ``"ncf,nn,ag"`` or a sequence, de-duplicated in order.

    Raises:
        ValueError: naming an unknown model, or when none is given.
    """
    names = [m.strip() for m in (models.split(",") if isinstance(models, str) else models)]
    names = list(dict.fromkeys(m for m in names if m))
    unknown = [m for m in names if m not in KNOWN_MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; expected some of {list(KNOWN_MODELS)}")
    if not names:
        raise ValueError("no models given")
    return tuple(names)


def _same_path(a: str, b: str) -> bool:
    if io.is_s3(a) or io.is_s3(b):
        return a.rstrip("/") == b.rstrip("/")
    return os.path.abspath(a) == os.path.abspath(b)


def output_config(cfg: Config, out: str, emr: str | None = None, ddi: str | None = None) -> Config:
    """``cfg`` with its data and runs under ``out``.

    ``data.prepared = out/prepared`` and ``train.storage_path = out/runs``; ``data.emr`` and
    ``data.ddi`` are set to ``emr`` and ``ddi`` when given.
    """
    data = replace(cfg.data, prepared=io.join(out, "prepared"),
                   **({"emr": emr} if emr else {}), **({"ddi": ddi} if ddi else {}))
    return replace(cfg, data=data, train=replace(cfg.train, storage_path=io.join(out, "runs")))


def prepare_inputs(cfg: Config) -> dict[str, Any]:
    """Prepare ``data.emr`` + ``data.ddi`` into ``data.prepared``, or reuse what is there.

    Returns:
        The manifest.

    Raises:
        FileNotFoundError: when an input does not exist.
        ValueError: when ``data.prepared`` holds data prepared from other inputs or with
            another seed.
    """
    prepared = cfg.data.prepared
    if io.exists(io.join(prepared, "manifest.json")):
        manifest = io.read_json(io.join(prepared, "manifest.json"))
        inputs = manifest.get("inputs", {})
        same = (_same_path(str(inputs.get("emr", "")), cfg.data.emr) and _same_path(str(inputs.get("ddi", "")),
                                                                                     cfg.data.ddi)
                and manifest.get("seed") == cfg.seed)
        if not same:
            raise ValueError(f"{prepared} holds data prepared from other inputs or with another seed "
                             f"({inputs}, seed {manifest.get('seed')}); use another output directory")
        log.info("reusing prepared data %s", prepared)
        return manifest
    for name, uri in (("EMR", cfg.data.emr), ("interaction", cfg.data.ddi)):
        if not io.exists(uri):
            raise FileNotFoundError(f"{name} input {uri} does not exist")
    from dpr_dist.data.prepare import prepare

    return prepare(cfg)


def pipeline(cfg: Config, emr: str, ddi: str, out: str, models: str | Sequence[str] = PIPELINE_MODELS, *,
             split: str = "test", mbr_temperature: float | None = None) -> dict[str, Any]:
    """Prepare, pre-train, train each model, evaluate on ``split`` and write the results.

    Args:
        cfg: The configuration (``data.*`` paths and ``train.storage_path`` are replaced
            by ``out``'s, see :func:`output_config`).
        emr: EMR records in the data contract (file, directory or ``s3://``).
        ddi: Drug interactions in the data contract.
        out: Output directory (local or ``s3://``); everything goes under it.
        models: Models, e.g. ``"ncf,nn,package2vec,lda,br,dam,gnn,wg,ag"`` (any of
            :data:`KNOWN_MODELS`).
        split: The split the metrics are computed on.
        mbr_temperature: With a temperature, each candidate-picking model also gets the
            entry ``<model>+mbr``: its pick of highest expected F1 under
            ``softmax(scores / T)`` (:mod:`dpr_dist.eval.mbr`), from the same scores.

    Returns:
        ``{"metrics": {model: metrics}, "model_dirs": {model: dir}, "table": str,
        "metrics_path": str, "predictions_path": str}``.

    Raises:
        ValueError: on an unknown model (before any work) or prepared data of other inputs.
        FileNotFoundError: when an input does not exist.
    """
    names = parse_models(models)
    cfg = output_config(cfg, out, emr, ddi)
    prepare_inputs(cfg)
    trained = [m for m in names if m != "popularity"]
    if "popularity" in names and "ncf" not in trained:
        trained.append("ncf")  # popularity is computed from the NCF directory
    if pretrained_checkpoint(cfg) is None:
        pretrain(cfg)  # once, before the runs that start from it
    requests = [RunRequest(cfg, m) for m in trained]
    dirs = dict(zip(trained, train_runs(requests, cfg.train.parallel_runs)))
    records = read_records(cfg.data.prepared, split)
    results: dict[str, dict] = {}
    tables: list[pa.Table] = []
    for m in names:
        path = dirs["ncf" if m == "popularity" else m]
        bundle = load_model_dir(path)
        mets, pred = evaluate_models(bundle, records, [m], mbr_temperature=mbr_temperature)
        metrics = mets[m]
        if m != "popularity":
            update_metrics(path, {split: metrics})
            metrics = {**metrics, "best_val_f1": bundle.metrics.get("best_val_f1"),
                       "best_epoch": bundle.metrics.get("best_epoch"), "model_dir": path}
        results[m] = metrics
        if f"{m}+mbr" in mets:
            results[f"{m}+mbr"] = {**mets[f"{m}+mbr"], "model_dir": path}
        tables.append(pred.select(["record_id", "model", "drugs"]))
    metrics_path, predictions_path = io.join(out, "metrics.json"), io.join(out, "predictions.parquet")
    io.write_json(results, metrics_path)
    io.write_table(pa.concat_tables(tables), predictions_path)
    table = format_table(results, TABLE_KEYS)
    write_text(metrics_markdown(results, split, records.num_rows), io.join(out, "metrics.md"))
    print(f"\n{split} metrics ({records.num_rows} records)\n{table}", flush=True)
    log.info("metrics -> %s, predictions -> %s", metrics_path, predictions_path)
    return {"metrics": results, "model_dirs": dirs, "table": table, "metrics_path": metrics_path,
            "predictions_path": predictions_path}


def metrics_markdown(results: dict[str, dict], split: str, records: int) -> str:
    """``metrics.json`` as a Markdown table (one row per model, 4 decimals)."""
    head = ["model", *TABLE_KEYS, "best_val_f1"]
    lines = [f"# {split} metrics ({records} records)", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for name, m in results.items():
        cells = [f"{m[k]:.4f}" if isinstance(m.get(k), float) else "-" for k in head[1:]]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines) + "\n"


def write_bytes(data: bytes, uri: str) -> None:
    """Write a file (local path, parent directories created, or ``s3://``)."""
    fs, path = io.filesystem(uri)
    if not io.is_s3(uri):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with fs.open_output_stream(path) as fh:
        fh.write(data)


def write_text(text: str, uri: str) -> None:
    """Write a UTF-8 text file (local or ``s3://``)."""
    write_bytes(text.encode("utf-8"), uri)
