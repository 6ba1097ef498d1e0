"""Streaming large CSV tables with pyarrow, and "first row per key" reductions over the stream.

The MIMIC-IV importer (:mod:`dpr_dist.data.importers.mimic_iv`) reads tables such as
``labevents`` (about 120M rows) with these: :func:`stream_csv` yields record batches of the
needed columns (gzip decoded on the fly, local or ``s3://``), and :class:`FirstRows` keeps
the first row of each key (for example the first result of each lab in each admission)
across the batches, so memory grows with the number of distinct keys, never with the table.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dpr_dist.data import io

#: Bytes of CSV per record batch.
BLOCK = 64 << 20


# ----------------------------------------------------------------------------- reading
def stream_csv(uri: str, types: dict[str, pa.DataType], block_size: int) -> Iterator[pa.RecordBatch]:
    """Yield record batches of the needed columns of a (gzipped) CSV."""
    fs, path = io.filesystem(uri)
    compression = "gzip" if uri.endswith(".gz") else None
    with fs.open_input_stream(path, compression=compression) as fh:
        reader = pacsv.open_csv(
            fh, read_options=pacsv.ReadOptions(block_size=block_size),
            convert_options=pacsv.ConvertOptions(include_columns=list(types), column_types=types,
                                                 strings_can_be_null=True))
        for batch in reader:
            yield batch


def read_csv(uri: str, types: dict[str, pa.DataType], block_size: int = BLOCK) -> pa.Table:
    """The needed columns of a (small) CSV table as one table, typed even when empty."""
    batches = list(stream_csv(uri, types, block_size))
    schema = pa.schema([(k, v) for k, v in types.items()])
    return pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()


def to_numpy(arr: pa.Array | pa.ChunkedArray, fill) -> np.ndarray:
    """``arr`` as a numpy array, nulls replaced by ``fill``."""
    return pc.fill_null(arr, fill).to_numpy(zero_copy_only=False)


def global_codes(arr: pa.Array, index: dict[str, int], values: list[str]) -> np.ndarray:
    """Codes of ``arr``'s strings in a growing ``values`` list (-1 for null)."""
    enc = pc.dictionary_encode(arr)
    local = []
    for v in enc.dictionary.to_pylist():
        if v not in index:
            index[v] = len(values)
            values.append(v)
        local.append(index[v])
    codes = to_numpy(enc.indices, -1).astype(np.int64)
    return np.array(local + [-1], dtype=np.int64)[codes]


# ----------------------------------------------------------------------------- reduction
def first_per_key(cols: dict[str, np.ndarray], keys: Sequence[str], order: Sequence[str]) -> dict[str, np.ndarray]:
    """Keep the first row of each key (by the ``order`` columns, ascending) in every column."""
    n = len(cols[keys[0]])
    if n == 0:
        return cols
    idx = np.lexsort([cols[c] for c in reversed(list(keys) + list(order))])
    first = np.ones(n, dtype=bool)
    diff = np.zeros(n - 1, dtype=bool)
    for k in keys:
        col = cols[k][idx]
        diff |= col[1:] != col[:-1]
    first[1:] = diff
    take = idx[first]
    return {name: col[take] for name, col in cols.items()}


class FirstRows:
    """Streaming "first row per key": reduce each block, compact the partials now and then."""

    def __init__(self, keys: Sequence[str], order: Sequence[str], min_compact: int) -> None:
        self.keys, self.order, self.min_compact = list(keys), list(order), min_compact
        self.done: dict[str, np.ndarray] | None = None
        self.pending: list[dict[str, np.ndarray]] = []
        self.pending_rows = 0

    def add(self, cols: dict[str, np.ndarray]) -> None:
        part = first_per_key(cols, self.keys, self.order)
        self.pending.append(part)
        self.pending_rows += len(part[self.keys[0]])
        done_rows = 0 if self.done is None else len(self.done[self.keys[0]])
        if self.pending_rows > max(self.min_compact, 2 * done_rows):
            self._compact()

    def _compact(self) -> None:
        parts = ([self.done] if self.done is not None else []) + self.pending
        if parts:
            merged = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
            self.done = first_per_key(merged, self.keys, self.order)
        self.pending, self.pending_rows = [], 0

    def result(self) -> dict[str, np.ndarray] | None:
        self._compact()
        return self.done
