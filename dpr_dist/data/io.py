"""Reading and writing contract tables on local paths and ``s3://`` URIs.

Endpoint and credentials for S3 come from the environment the usual way
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``),
which both pyarrow's ``S3FileSystem`` and s3fs honour.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json",
           ".ndjson": "json"}


def is_s3(uri: str) -> bool:
    """Whether ``uri`` names an S3 object or prefix."""
    return str(uri).startswith("s3://")


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, path)`` for a local path or ``s3://`` URI."""
    uri = str(uri)
    if is_s3(uri):
        kwargs: dict[str, Any] = {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            kwargs["endpoint_override"] = endpoint
            if endpoint.startswith("http://"):
                kwargs["scheme"] = "http"
        # Explicit keys from the driver's environment travel with the filesystem object to
        # Ray workers, whose environment may lack them; otherwise the default chain applies
        # (instance profile, IRSA, ~/.aws) on each worker.
        if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
            kwargs["access_key"] = os.environ["AWS_ACCESS_KEY_ID"]
            kwargs["secret_key"] = os.environ["AWS_SECRET_ACCESS_KEY"]
            if os.environ.get("AWS_SESSION_TOKEN"):
                kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            kwargs["region"] = region
        return pafs.S3FileSystem(**kwargs), uri[len("s3://"):]
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def ray_storage(uri: str) -> tuple[str, pafs.FileSystem | None]:
    """``(path, filesystem)`` as Ray Train and Tune want a ``storage_path`` and its
    ``storage_filesystem``: an absolute local path and None, or the S3 path without its
    scheme and the S3 filesystem of :func:`filesystem`."""
    if is_s3(uri):
        fs, path = filesystem(uri)
        return path, fs
    return os.path.abspath(uri), None


def join(base: str, *parts: str) -> str:
    """Join path parts for local paths and URIs alike."""
    base = str(base).rstrip("/")
    return "/".join([base, *[p.strip("/") for p in parts]])


def makedirs(uri: str) -> None:
    """Create a directory (a no-op prefix on S3)."""
    fs, path = filesystem(uri)
    if not is_s3(uri):
        fs.create_dir(path, recursive=True)


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(uri: str) -> list[str]:
    """Data files under ``uri`` (itself if a file), sorted, hidden files skipped.

    Raises:
        FileNotFoundError: when nothing is there.
    """
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [uri]
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"input not found: {uri}")
    out = []
    for f in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        name = f.base_name
        if f.type == pafs.FileType.File and not name.startswith((".", "_")) and file_format(name):
            out.append(("s3://" + f.path) if is_s3(uri) else f.path)
    if not out:
        raise FileNotFoundError(f"no Parquet/CSV/JSON Lines files under {uri}")
    return sorted(out)


def file_format(name: str) -> str | None:
    """``parquet``, ``csv`` or ``json`` from a file name (``.gz`` allowed for text)."""
    name = name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for ext, fmt in FORMATS.items():
        if name.endswith(ext):
            return fmt
    return None


def read_file(uri: str) -> pa.Table:
    """Read one Parquet / CSV / JSON Lines file into an Arrow table."""
    fs, path = filesystem(uri)
    fmt = file_format(uri)
    if fmt == "parquet":
        return pq.read_table(path, filesystem=fs)
    compression = "gzip" if uri.lower().endswith(".gz") else None
    with fs.open_input_stream(path, compression=compression) as fh:
        if fmt == "csv":
            return pacsv.read_csv(fh)
        if fmt == "json":
            return pajson.read_json(fh)
    raise ValueError(f"unsupported file type: {uri} (use .parquet, .csv or .jsonl)")


def read_table(uri: str) -> pa.Table:
    """Read a file or a directory of files into one table (columns unified by name)."""
    tables = [read_file(f) for f in list_files(uri)]
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def peek_schema(uri: str) -> pa.Schema:
    """Schema of the first file under ``uri`` without reading the data (Parquet) or a sample."""
    first = list_files(uri)[0]
    if file_format(first) == "parquet":
        fs, path = filesystem(first)
        return pads.dataset(path, filesystem=fs, format="parquet").schema
    return read_file(first).schema


def write_table(table: pa.Table, uri: str) -> None:
    """Write a Parquet file (local or S3), creating parent directories."""
    fs, path = filesystem(uri)
    if not is_s3(uri):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    pq.write_table(table, path, filesystem=fs)


def write_json(obj: Any, uri: str) -> None:
    fs, path = filesystem(uri)
    if not is_s3(uri):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with fs.open_output_stream(path) as fh:
        fh.write(json.dumps(obj, indent=2, sort_keys=False, default=_json_default).encode())


def read_json(uri: str) -> Any:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as fh:
        return json.loads(fh.read().decode())


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o)}")
