"""Streaming CSV reads and the "first row per key" reduction (dpr_dist/data/importers/csv_stream.py)."""

from __future__ import annotations

import gzip

import numpy as np
import pyarrow as pa

from dpr_dist.data.importers.csv_stream import FirstRows, first_per_key, global_codes, read_csv, stream_csv, to_numpy


def test_first_per_key_keeps_the_earliest_row_of_each_key():
    cols = {"hadm": np.array([2, 1, 2, 1, 2]), "item": np.array([7, 7, 7, 8, 7]),
            "time": np.array([30, 20, 10, 50, 40]), "value": np.array([0.3, 0.2, 0.1, 0.5, 0.4])}
    out = first_per_key(cols, ["hadm", "item"], ["time"])
    got = sorted(zip(out["hadm"].tolist(), out["item"].tolist(), out["value"].tolist()))
    assert got == [(1, 7, 0.2), (1, 8, 0.5), (2, 7, 0.1)]
    empty = {k: v[:0] for k, v in cols.items()}
    assert len(first_per_key(empty, ["hadm"], ["time"])["hadm"]) == 0


def test_streaming_reduction_equals_one_reduction_of_the_whole_table():
    rng = np.random.default_rng(0)
    n = 5000
    cols = {"k": rng.integers(0, 300, n), "t": rng.permutation(n), "v": rng.random(n)}
    whole = first_per_key(cols, ["k"], ["t"])
    acc = FirstRows(["k"], ["t"], min_compact=100)  # compacts many times over 50 blocks
    for start in range(0, n, 100):
        acc.add({c: a[start:start + 100] for c, a in cols.items()})
    got = acc.result()
    order, want = np.argsort(got["k"]), np.argsort(whole["k"])
    for c in cols:
        np.testing.assert_array_equal(got[c][order], whole[c][want])
    assert FirstRows(["k"], ["t"], 10).result() is None


def test_stream_csv_reads_gzip_in_blocks_with_only_the_needed_columns(tmp_path):
    path = tmp_path / "labevents.csv.gz"
    rows = "\n".join(f"{i},{i % 3},,secret note {i}" for i in range(2000))
    with gzip.open(path, "wt") as fh:
        fh.write("hadm_id,itemid,flag,comments\n" + rows + "\n")
    types = {"hadm_id": pa.int64(), "flag": pa.string()}
    batches = list(stream_csv(str(path), types, block_size=4096))
    assert len(batches) > 1
    assert all(b.schema.names == ["hadm_id", "flag"] for b in batches)
    table = pa.Table.from_batches(batches)
    assert table.num_rows == 2000 and table["flag"].null_count == 2000  # empty strings read as null
    whole = read_csv(str(path), types)
    assert whole.schema.names == ["hadm_id", "flag"]
    assert whole["hadm_id"].to_pylist() == list(range(2000))


def test_read_csv_of_a_header_only_table_is_typed_and_empty(tmp_path):
    path = tmp_path / "d_labitems.csv"
    path.write_text("itemid,label\n")
    out = read_csv(str(path), {"itemid": pa.int64(), "label": pa.string()})
    assert out.num_rows == 0 and out.schema.field("itemid").type == pa.int64()


def test_global_codes_grow_one_vocabulary_across_batches():
    index, values = {}, []
    a = global_codes(pa.array(["x", None, "y", "x"]), index, values)
    b = global_codes(pa.array(["z", "y"]), index, values)
    assert values == ["x", "y", "z"]
    assert a.tolist() == [0, -1, 1, 0] and b.tolist() == [2, 1]
    assert to_numpy(pa.array([1, None, 3]), -1).tolist() == [1, -1, 3]
