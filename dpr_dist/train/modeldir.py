"""The model directory: everything evaluation, serving and batch scoring need, and nothing else.

A finished training run writes one self-contained directory (local path or ``s3://``
prefix); :func:`load_model_dir` reads it back without the training data::

    bundle.json              format, model name, sizes, threshold, NCF's K, file list
    config.yaml              the full run configuration
    ncf.pt                   pre-trained NCF (state dict): candidate search and NCF baseline
    model.pt                 the package model (state dict with fitted buffers; absent for
                             an NCF-only directory)
    vocab/drugs.parquet      id, name, train_count, aligned
    vocab/doc_words.parquet  id, token, train_count
    relation.parquet         src, dst, label: the relation matrix R (+ description of each
                             pair when the prepared data has it)
    cooccurrence.parquet     src, dst, p: co-occurrence proportions of the training split
    candidate_index.npz      training patients' pre-trained embeddings, packages, record ids
    manifest.json            the prepared data's manifest (statistics, inputs)
    metrics.json             validation history, best epoch, test metrics when evaluated

The package model is any model :func:`dpr_dist.models.variants.build_model` builds (a DPR
variant or a baseline of :mod:`dpr_dist.models.baselines`), rebuilt by name. Weights are
loaded with ``torch.load(weights_only=True)``; nothing is unpickled.
"""

from __future__ import annotations

import datetime as _dt
import io as _io
import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
import yaml

from dpr_dist.config import Config, config_from_dict
from dpr_dist.data import io
from dpr_dist.data.documents import NOTE_VOCAB_SIZE
from dpr_dist.data.graphs import PairTable
from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.models.ncf import NCF
from dpr_dist.models.variants import build_model

FORMAT = "dpr-dist/model/v1"
REQUIRED = ("bundle.json", "config.yaml", "ncf.pt", "vocab/drugs.parquet", "vocab/doc_words.parquet",
            "relation.parquet", "cooccurrence.parquet", CandidateIndex.FILENAME, "manifest.json", "metrics.json")


@dataclass
class ModelBundle:
    """A loaded model directory.

    Attributes:
        path: Where it was loaded from.
        cfg: The run configuration.
        model_name: The package model's name (``ag``, ``wg``, ``gnn``, ...) or ``ncf``.
        ncf: The pre-trained :class:`NCF` (eval mode, CPU).
        model: The package model (a :class:`~dpr_dist.models.dpr.DPR` variant or a package
            baseline, eval mode, CPU), None for ``ncf``.
        drugs: Drug vocabulary (``id``, ``name``, ``train_count``, ``aligned``).
        doc_words: Disease-document vocabulary (``id``, ``token``, ``train_count``).
        relation: ``R`` as a :class:`PairTable`.
        cooc: Co-occurrence proportions as a :class:`PairTable`.
        index: Training patients' :class:`CandidateIndex`.
        manifest: The prepared data's manifest.
        metrics: Training and evaluation metrics.
        info: ``bundle.json``.
    """

    path: str
    cfg: Config
    model_name: str
    ncf: NCF
    model: torch.nn.Module | None
    drugs: pa.Table
    doc_words: pa.Table
    relation: PairTable
    cooc: PairTable
    index: CandidateIndex
    manifest: dict
    metrics: dict
    info: dict
    _relation_dense: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_drugs(self) -> int:
        return int(self.info["num_drugs"])

    @property
    def num_doc_words(self) -> int:
        return int(self.info["num_doc_words"])

    @property
    def threshold(self) -> float:
        """Co-occurrence threshold of candidate graphs (``data.threshold``)."""
        return float(self.info["threshold"])

    @property
    def top_k(self) -> int:
        """NCF's and popularity's package size: the average training package size."""
        return int(self.info["top_k"])

    def popularity(self) -> np.ndarray:
        """Training count of every drug ``[M]``."""
        return self.drugs["train_count"].to_numpy().astype(np.int64)

    def relation_matrix(self) -> np.ndarray:
        """Dense ``[M, M]`` int8 relation matrix (-1 unknown), cached."""
        if self._relation_dense is None:
            self._relation_dense = self.relation.dense()
        return self._relation_dense


def pair_table_from_arrow(table: pa.Table, value: str, num_drugs: int) -> PairTable:
    """A :class:`PairTable` from ``src``, ``dst`` and a value column (sorted by key here)."""
    keys = table["src"].to_numpy().astype(np.int64) * num_drugs + table["dst"].to_numpy().astype(np.int64)
    values = table[value].to_numpy()
    order = np.argsort(keys, kind="stable")
    return PairTable(num_drugs, keys[order], values[order])


def pair_table_to_arrow(pt: PairTable, value: str, descriptions: pa.Table | None = None) -> pa.Table:
    """``src``, ``dst`` and ``value`` of every pair; with ``descriptions`` (``src``, ``dst``,
    ``description``) also each pair's description (null where it has none)."""
    m = pt.num_drugs
    table = pa.table({"src": (pt.keys // m).astype(np.int32), "dst": (pt.keys % m).astype(np.int32),
                      value: pt.values})
    if descriptions is None or "description" not in descriptions.column_names:
        return table
    keys = descriptions["src"].to_numpy().astype(np.int64) * m + descriptions["dst"].to_numpy().astype(np.int64)
    order = np.argsort(keys, kind="stable")
    if not len(keys):
        return table.append_column("description", pa.nulls(table.num_rows, pa.string()))
    pos = np.minimum(np.searchsorted(keys[order], pt.keys), len(keys) - 1)
    row = pa.array(order[pos], mask=keys[order][pos] != pt.keys)  # null where a pair has no description
    return table.append_column("description", descriptions["description"].combine_chunks().take(row))


def save_model_dir(path: str, *, cfg: Config, model_name: str, ncf: NCF, model: torch.nn.Module | None,
                   index: CandidateIndex, drugs: pa.Table, doc_words: pa.Table, relation: PairTable,
                   cooc: PairTable, manifest: dict, metrics: dict, top_k: int,
                   descriptions: pa.Table | None = None) -> str:
    """Write a model directory to ``path`` (local or ``s3://``, replaced if present).

    Args:
        path: Destination.
        cfg: The run configuration (``model.name`` is set to ``model_name``).
        model_name: ``ncf`` or the package model's name (a DPR variant or a baseline).
        ncf: The pre-trained NCF.
        model: The package model (None for ``ncf``); its state dict (with fitted buffers)
            is saved.
        index: Candidate index of the training patients.
        drugs, doc_words: Vocabularies (``vocab/*.parquet`` of the prepared data).
        relation, cooc: Pair tables of the prepared data.
        manifest: The prepared data's manifest.
        metrics: Training metrics (validation history, best epoch, ...).
        top_k: NCF's ``K``.
        descriptions: Optional interaction descriptions (``src``, ``dst``,
            ``description``, e.g. the prepared ``relation.parquet``), kept as the
            ``description`` column of ``relation.parquet``.

    Returns:
        ``path``.
    """
    if (model is None) != (model_name == "ncf"):
        raise ValueError(f"save_model_dir: model {model_name!r} needs {'no' if model_name == 'ncf' else 'a'} "
                         "package model")
    cfg = replace(cfg, model=replace(cfg.model, name=model_name))
    with tempfile.TemporaryDirectory(prefix="dpr-model-") as tmp:
        root = Path(tmp)
        (root / "vocab").mkdir()
        torch.save(ncf.state_dict(), root / "ncf.pt")
        files = list(REQUIRED)
        if model is not None:
            torch.save(model.state_dict(), root / "model.pt")
            files.append("model.pt")
        pq.write_table(drugs, root / "vocab/drugs.parquet")
        pq.write_table(doc_words, root / "vocab/doc_words.parquet")
        pq.write_table(pair_table_to_arrow(relation, "label", descriptions), root / "relation.parquet")
        pq.write_table(pair_table_to_arrow(cooc, "p"), root / "cooccurrence.parquet")
        index.save(root)
        (root / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        (root / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        (root / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        info = {
            "format": FORMAT,
            "model": model_name,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "num_drugs": relation.num_drugs,
            "num_doc_words": doc_words.num_rows,
            "num_chars": NOTE_VOCAB_SIZE,
            "threshold": cfg.data.threshold,
            "top_k": int(top_k),
            "training_patients": len(index),
            "files": sorted(files),
        }
        (root / "bundle.json").write_text(json.dumps(info, indent=2))
        _upload(root, path)
    return path


def _upload(local: Path, dest: str) -> None:
    fs, base = io.filesystem(dest)
    if fs.get_file_info(base).type != pafs.FileType.NotFound:
        fs.delete_dir_contents(base, missing_dir_ok=True)
    if not io.is_s3(dest):
        os.makedirs(base, exist_ok=True)
    pafs.copy_files(str(local), base, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def _read_bytes(path: str, name: str) -> bytes:
    fs, base = io.filesystem(path)
    target = f"{base.rstrip('/')}/{name}"
    if fs.get_file_info(target).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"model directory {path}: missing {name}")
    with fs.open_input_file(target) as fh:
        return fh.read()


def load_model_dir(path: str) -> ModelBundle:
    """Load a model directory written by :func:`save_model_dir` (local or ``s3://``).

    Raises:
        FileNotFoundError: naming the missing file.
        ValueError: on another format or inconsistent sizes.
    """
    info = json.loads(_read_bytes(path, "bundle.json"))
    if info.get("format") != FORMAT:
        raise ValueError(f"model directory {path}: format {info.get('format')!r}, expected {FORMAT!r}")
    cfg = config_from_dict(yaml.safe_load(_read_bytes(path, "config.yaml")))
    m, v, c = int(info["num_drugs"]), int(info["num_doc_words"]), int(info["num_chars"])

    def weights(name: str) -> dict[str, torch.Tensor]:
        return torch.load(_io.BytesIO(_read_bytes(path, name)), map_location="cpu", weights_only=True)

    def table(name: str) -> pa.Table:
        return pq.read_table(pa.BufferReader(_read_bytes(path, name)))

    ncf = NCF(cfg.model, m, v, c)
    ncf.load_state_dict(weights("ncf.pt"))
    ncf.eval()
    model = None
    if info["model"] != "ncf":
        model = build_model(replace(cfg.model, name=info["model"]), m, v, c)
        model.load_state_dict(weights("model.pt"))  # parameters and fitted buffers
        model.eval()
    with tempfile.TemporaryDirectory(prefix="dpr-index-") as tmp:
        Path(tmp, CandidateIndex.FILENAME).write_bytes(_read_bytes(path, CandidateIndex.FILENAME))
        index = CandidateIndex.load(tmp)
    drugs = table("vocab/drugs.parquet")
    if drugs.num_rows != m:
        raise ValueError(f"model directory {path}: vocab/drugs.parquet has {drugs.num_rows} rows, expected {m}")
    return ModelBundle(
        path=path, cfg=cfg, model_name=info["model"], ncf=ncf, model=model, drugs=drugs,
        doc_words=table("vocab/doc_words.parquet"),
        relation=pair_table_from_arrow(table("relation.parquet"), "label", m),
        cooc=pair_table_from_arrow(table("cooccurrence.parquet"), "p", m),
        index=index, manifest=json.loads(_read_bytes(path, "manifest.json")),
        metrics=json.loads(_read_bytes(path, "metrics.json")), info=info)


def update_metrics(path: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """Merge ``metrics`` into the directory's ``metrics.json`` (e.g. test metrics); returns the result."""
    current = json.loads(_read_bytes(path, "metrics.json"))
    current.update(metrics)
    io.write_json(current, io.join(path, "metrics.json"))
    return current
