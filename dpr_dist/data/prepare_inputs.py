"""The preparation pipeline's inputs: the interaction table, the drug-name normalizer, the EMR files.

:func:`load_interactions` reads, checks and labels the interactions (bad rows become rejects),
:func:`make_normalizer` aligns drug names onto the interaction table's names, and
:func:`read_emr_dataset` opens the EMR files as one Ray Dataset. :mod:`dpr_dist.data.prepare`
runs them on the driver before the distributed steps.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpr_dist.data import io
from dpr_dist.data.interactions import fill_missing_labels
from dpr_dist.data.normalize import DrugNormalizer, base_names
from dpr_dist.data.schema import DDI_REQUIRED, DDI_SCHEMA, REJECTS_SCHEMA, conform

LABEL_NAMES = {0: "none", 1: "synergism", 2: "antagonism"}


def make_normalizer(inter: pa.Table, vocab: str = "", emr_names: list[str] = ()) -> DrugNormalizer:
    """Drug-name normalizer onto the interaction table's names.

    Args:
        inter: The interaction table (its names are the preferred canonical names).
        vocab: Optional vocabulary CSV whose synonyms also align names.
        emr_names: Raw EMR drug names; their salt-free forms become canonical too, so a
            salt form folds into the bare name the EMR also uses.
    """
    names = pc.unique(pa.concat_arrays([inter["drug_a"].combine_chunks(), inter["drug_b"].combine_chunks()]))
    names = [n for n in names.to_pylist() if n]
    extra = base_names(emr_names)
    if vocab:
        return DrugNormalizer.from_vocabulary(vocab, prefer=names, extra=extra)
    return DrugNormalizer([*names, *extra], prefer=names)


def load_interactions(uri: str) -> tuple[pa.Table, pa.Table]:
    """Read, validate and label the interaction table.

    Rows with a missing drug name or an unknown label are quarantined; rows with no label
    are classified from their description by the template rules.

    Returns:
        ``(interactions, rejects)``: interactions with ``drug_a``, ``drug_b``, ``label``,
        ``description`` and the integer ``code`` (0 none, 1 synergism, 2 antagonism).
    """
    table = conform(io.read_table(uri), DDI_SCHEMA, DDI_REQUIRED, f"interaction input {uri}")
    n = table.num_rows
    reason = np.full(n, None, dtype=object)
    field = np.full(n, None, dtype=object)
    for col in ("drug_a", "drug_b"):
        c = table[col].combine_chunks()
        blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(c)), 0), True)
        m = blank.to_numpy(zero_copy_only=False) & (reason == None)  # noqa: E711
        reason[m], field[m] = f"missing {col}", col
    label = pc.utf8_lower(pc.utf8_trim_whitespace(table["label"].combine_chunks()))
    bad_label = pc.fill_null(pc.invert(pc.is_in(label, value_set=pa.array(list(LABEL_NAMES.values())))), False)
    m = bad_label.to_numpy(zero_copy_only=False) & (reason == None)  # noqa: E711
    reason[m], field[m] = "label must be none, synergism or antagonism", "label"
    no_text = pc.and_(pc.is_null(label), pc.is_null(table["description"])).to_numpy(zero_copy_only=False)
    m = no_text & (reason == None)  # noqa: E711
    reason[m], field[m] = "neither label nor description given", "label"
    ok = reason == None  # noqa: E711
    bad = np.flatnonzero(~ok)
    rejects = pa.table({"source": pa.array([uri] * len(bad), pa.string()), "row": pa.array(bad, pa.int64()),
                        "record_id": pc.binary_join_element_wise(
                            table["drug_a"].take(bad), table["drug_b"].take(bad), "->").cast(pa.string()),
                        "field": pa.array(field[bad].tolist(), pa.string()),
                        "reason": pa.array(reason[bad].tolist(), pa.string())}, schema=REJECTS_SCHEMA)
    table = table.set_column(2, "label", label).filter(pa.array(ok))
    table, more = fill_missing_labels(table)
    codes = pc.index_in(table["label"], value_set=pa.array(["none", "synergism", "antagonism"]))
    table = table.append_column("code", codes.cast(pa.int8()))
    return table, pa.concat_tables([rejects, more.cast(REJECTS_SCHEMA)])


def read_emr_dataset(uri: str):
    """A Ray Dataset over the EMR files (Parquet, CSV and JSON Lines; local or S3)."""
    import ray

    files = io.list_files(uri)
    fs, _ = io.filesystem(uri)
    strip = (lambda f: f[len("s3://"):]) if io.is_s3(uri) else (lambda f: f)
    by_fmt: dict[str, list[str]] = {}
    for f in files:
        by_fmt.setdefault(io.file_format(f), []).append(strip(f))
    parts = []
    for fmt, paths in sorted(by_fmt.items()):
        reader = {"parquet": ray.data.read_parquet, "csv": ray.data.read_csv, "json": ray.data.read_json}[fmt]
        parts.append(reader(paths, filesystem=fs, include_paths=True))
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
