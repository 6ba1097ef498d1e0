"""Reading prepared data (``dpr prepare`` output) for training and evaluation.

* :class:`Prepared`, :func:`load_prepared` -- the manifest, vocabularies and pair tables
  (interaction labels, co-occurrence proportions) of a prepared directory;
* :func:`read_records` -- one split's records as an Arrow table;
* :func:`train_dataset` -- the training split as a materialized Ray Dataset for Ray Train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pyarrow as pa
import pyarrow.dataset as pads

from dpr_dist.data import io
from dpr_dist.data.graphs import PairTable
from dpr_dist.train.collate import PATIENT_COLUMNS
from dpr_dist.train.modeldir import pair_table_from_arrow


@dataclass
class Prepared:
    """The small tables of a prepared data directory (``dpr prepare`` output)."""

    path: str
    manifest: dict
    drugs: pa.Table
    doc_words: pa.Table
    relation: PairTable
    cooc: PairTable
    descriptions: pa.Table | None = None

    @property
    def num_drugs(self) -> int:
        return self.drugs.num_rows

    @property
    def num_doc_words(self) -> int:
        return self.doc_words.num_rows


def load_prepared(path: str, threshold: float | None = None) -> Prepared:
    """Read the manifest, vocabularies and pair tables of a prepared directory.

    Raises:
        FileNotFoundError: when ``path`` holds no prepared data.
        ValueError: when ``threshold`` is below the threshold the graphs were built at.
    """
    if not io.exists(io.join(path, "manifest.json")):
        raise FileNotFoundError(f"no prepared data at {path} (run `dpr prepare` first)")
    manifest = io.read_json(io.join(path, "manifest.json"))
    built = float(manifest.get("build_threshold", 0.0))
    if threshold is not None and threshold < built:
        raise ValueError(f"data.threshold={threshold} is below the build threshold {built} of {path}; "
                         "re-run `dpr prepare` with a lower data.build_threshold")
    drugs = io.read_table(io.join(path, "vocab/drugs.parquet"))
    m = drugs.num_rows
    relation = io.read_table(io.join(path, "relation.parquet"))
    descriptions = relation.select(["src", "dst", "description"]) if "description" in relation.column_names else None
    return Prepared(path, manifest, drugs, io.read_table(io.join(path, "vocab/doc_words.parquet")),
                    pair_table_from_arrow(relation, "label", m),
                    pair_table_from_arrow(io.read_table(io.join(path, "cooccurrence.parquet")), "p", m),
                    descriptions)


def read_records(prepared: str, split: str, columns: Sequence[str] = PATIENT_COLUMNS) -> pa.Table:
    """One split of the prepared records (only ``columns``), sorted by record id.

    Sorted, not in file order: the order in which a Ray Data write lays blocks out in the
    files can differ between two preparations of the same input, and the rows' order
    reaches the candidate index (ties) and everything built from it.
    """
    uri = io.join(prepared, "records", f"split={split}")
    if not io.exists(uri):
        raise FileNotFoundError(f"prepared data {prepared} has no {split} split")
    fs, path = io.filesystem(uri)
    wanted = list(columns)
    read = list(dict.fromkeys(wanted + ["record_id"]))
    table = pads.dataset(path, filesystem=fs, format="parquet").to_table(columns=read)
    return table.sort_by("record_id").select(wanted)


def train_dataset(prepared: str, columns: Sequence[str], rows_per_block: int = 4096):
    """The training split as a materialized Ray Dataset of ``columns``, sorted by record id,
    in blocks of about ``rows_per_block`` rows.

    The workers' shards and batches follow the row and block order, so a seeded run's
    metrics depend on it. The files' order is not a reliable one (a Ray Data write may lay
    the same blocks out differently each time), so the rows are sorted by record id (a
    distributed sort) and cut into equal blocks in that order (``repartition`` without a
    shuffle), which is the same for every copy of the same prepared data. ``preserve_order``
    keeps it from depending on which task finishes first.
    """
    import ray

    fs, path = io.filesystem(io.join(prepared, "records", "split=train"))
    data_ctx = ray.data.DataContext.get_current()
    keep = data_ctx.execution_options.preserve_order
    data_ctx.execution_options.preserve_order = True
    try:
        read = list(dict.fromkeys(list(columns) + ["record_id"]))
        ds = ray.data.read_parquet(path, filesystem=fs).select_columns(read)
        rows = pads.dataset(path, filesystem=fs, format="parquet").count_rows()  # the files' footers only
        blocks = max(1, -(-rows // max(1, rows_per_block)))
        ds = ds.sort("record_id").repartition(blocks, shuffle=False)
        if "record_id" not in columns:
            ds = ds.drop_columns(["record_id"])
        return ds.materialize()
    finally:
        data_ctx.execution_options.preserve_order = keep
