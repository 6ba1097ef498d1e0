"""Local paths and s3:// URIs as the library and Ray see them."""

from __future__ import annotations

import os

import pyarrow.fs as pafs

from dpr_dist.data import io


def test_join_and_is_s3():
    assert io.join("s3://bucket/a/", "/b/", "c.parquet") == "s3://bucket/a/b/c.parquet"
    assert io.join("runs", "x") == "runs/x"
    assert io.is_s3("s3://bucket/k") and not io.is_s3("runs/s3://x")


def test_ray_storage_gives_an_absolute_local_path_and_no_filesystem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert io.ray_storage("runs/sweep") == (str(tmp_path / "runs" / "sweep"), None)


def test_ray_storage_of_s3_drops_the_scheme_and_gives_the_s3_filesystem(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never contacted: nothing is read
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    path, fs = io.ray_storage("s3://bucket/runs/sweep")
    assert path == "bucket/runs/sweep" and isinstance(fs, pafs.S3FileSystem)
    assert "127.0.0.1:9" in repr(fs.__reduce__())  # the endpoint travels with the filesystem to the workers


def test_filesystem_of_a_local_path_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fs, path = io.filesystem("x.parquet")
    assert isinstance(fs, pafs.LocalFileSystem) and path == os.path.join(str(tmp_path), "x.parquet")
