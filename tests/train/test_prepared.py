"""Reading prepared data for training: the same rows in the same order and blocks, whatever
order the files hold them in."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq

from dpr_dist.train.collate import PATIENT_COLUMNS
from dpr_dist.train.prepared import read_records, train_dataset


def _reordered_copy(src, dst):
    """``src`` with every split's rows reversed and cut into two files (as another Ray Data
    write of the same input may lay them out)."""
    shutil.copytree(src, dst)
    for split_dir in (dst / "records").iterdir():
        table = pq.read_table(split_dir)
        for f in split_dir.iterdir():
            f.unlink()
        rev = table.take(list(range(table.num_rows - 1, -1, -1)))
        half = rev.num_rows // 2
        pq.write_table(rev.slice(0, half), split_dir / "part-b.parquet")
        pq.write_table(rev.slice(half), split_dir / "part-a.parquet")


def _blocks(ds):
    return [b["record_id"].to_pylist() for b in ds.iter_batches(batch_format="pyarrow", batch_size=None)]


def test_read_records_is_sorted_by_record_id_whatever_the_file_order(tiny_prepared, tmp_path):
    other = tmp_path / "other"
    _reordered_copy(tiny_prepared["dir"], other)
    for split in ("train", "val", "test"):
        a, b = read_records(str(tiny_prepared["dir"]), split), read_records(str(other), split)
        ids = a["record_id"].to_pylist()
        assert ids == sorted(ids) and b["record_id"].to_pylist() == ids
        assert a.column_names == list(PATIENT_COLUMNS)
        assert a["drug_ids"].to_pylist() == b["drug_ids"].to_pylist()
    # columns without record_id come in the same order too
    only = read_records(str(other), "train", ("drug_ids",))
    train = read_records(str(tiny_prepared["dir"]), "train")
    assert only.column_names == ["drug_ids"] and only["drug_ids"].to_pylist() == train["drug_ids"].to_pylist()


def test_train_dataset_has_the_same_blocks_whatever_the_file_order(tiny_prepared, ray_session, tmp_path):
    other = tmp_path / "other"
    _reordered_copy(tiny_prepared["dir"], other)
    a = _blocks(train_dataset(str(tiny_prepared["dir"]), PATIENT_COLUMNS, rows_per_block=50))
    b = _blocks(train_dataset(str(other), PATIENT_COLUMNS, rows_per_block=50))
    rows = sum(a, [])
    assert a == b and rows == sorted(rows)
    n = tiny_prepared["manifest"]["splits"]["train"]["records"]
    assert len(rows) == n and len(a) == -(-n // 50)  # equal blocks of at most 50 rows, in id order
    assert max(map(len, a)) - min(map(len, a)) <= 1
    no_ids = train_dataset(str(other), ("drug_ids",), rows_per_block=50)
    assert no_ids.columns() == ["drug_ids"]
