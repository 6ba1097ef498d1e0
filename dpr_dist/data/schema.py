"""The EMR and drug-interaction data contract (``docs/data-contract.md``).

Arrow schemas of the two inputs, and validation that splits a table into the rows that
go on and the rows that are quarantined to ``rejects`` with a reason.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LAB_TYPE = pa.struct(
    [
        ("name", pa.string()),
        ("value", pa.float64()),
        ("ref_low", pa.float64()),
        ("ref_high", pa.float64()),
        ("flag", pa.string()),
    ]
)

#: EMR records, one row per hospital stay.
EMR_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("gender", pa.string(), nullable=False),
        pa.field("age", pa.float64(), nullable=False),
        pa.field("insurance", pa.string()),
        pa.field("surgery", pa.bool_()),
        pa.field("labs", pa.list_(LAB_TYPE)),
        pa.field("note", pa.string()),
        pa.field("drugs", pa.list_(pa.string()), nullable=False),
        pa.field("admit_time", pa.timestamp("us")),
    ]
)
EMR_REQUIRED = ("record_id", "patient_id", "gender", "age", "drugs")

#: Drug interactions, one row per ordered pair (from ``drug_a`` to ``drug_b``).
DDI_SCHEMA = pa.schema(
    [
        pa.field("drug_a", pa.string(), nullable=False),
        pa.field("drug_b", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("description", pa.string()),
    ]
)
DDI_REQUIRED = ("drug_a", "drug_b")
DDI_LABELS = ("none", "synergism", "antagonism")

#: Quarantined rows: which record, which field, and why.
REJECTS_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("record_id", pa.string()),
        pa.field("field", pa.string()),
        pa.field("reason", pa.string()),
    ]
)


class SchemaError(ValueError):
    """An input misses a required column or has one of the wrong type (stops the run)."""


def _parse_json_list(col: pa.Array, typ: pa.DataType, name: str) -> pa.Array:
    import json

    out = []
    for i, v in enumerate(col.to_pylist()):
        if v is None or v == "":
            out.append(None)
            continue
        try:
            out.append(json.loads(v))
        except json.JSONDecodeError:
            out.append(None)  # unparseable: flagged by validation through the raw column
    try:
        return pa.array(out, typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaError(f"column {name!r}: JSON values do not match {typ}: {exc}") from None


def conform(table: pa.Table, schema: pa.Schema, required: tuple[str, ...], what: str) -> pa.Table:
    """Cast ``table`` to ``schema``: add missing optional columns as nulls, reorder, cast.

    Text formats are accepted for the nested EMR columns: ``drugs`` as a ``|``-separated
    string, ``labs`` as a JSON string holding the list of lab structs.

    Raises:
        SchemaError: naming the column when a required one is missing or a column cannot
            be cast to the contract's type.
    """
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise SchemaError(f"{what}: missing required column(s) {missing}; see docs/data-contract.md")
    cols = []
    for field in schema:
        if field.name not in table.column_names:
            cols.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table[field.name].combine_chunks()
        if pa.types.is_null(col.type):
            cols.append(pa.nulls(table.num_rows, field.type))
            continue
        if pa.types.is_list(field.type) and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            if field.name == "drugs":
                col = pc.split_pattern(pc.utf8_trim_whitespace(col.cast(pa.string())), "|")
                col = pa.array([None if v is None else [s.strip() for s in v if s.strip()] for v in col.to_pylist()],
                               field.type)
            else:
                col = _parse_json_list(col, field.type, field.name)
        try:
            col = col.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise SchemaError(
                f"{what}: column {field.name!r} has type {col.type}, expected {field.type} ({exc})"
            ) from None
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=pa.schema([pa.field(f.name, f.type) for f in schema]))


def check_columns(schema_in: pa.Schema, schema: pa.Schema, required: tuple[str, ...], what: str) -> None:
    """Fail fast on a missing required column or an incompatible type, before any work."""
    missing = [c for c in required if c not in schema_in.names]
    if missing:
        raise SchemaError(f"{what}: missing required column(s) {missing}; see docs/data-contract.md")
    for field in schema:
        if field.name not in schema_in.names:
            continue
        have = schema_in.field(field.name).type
        if have == field.type or pa.types.is_null(have):
            continue
        textual = pa.types.is_string(have) or pa.types.is_large_string(have)
        if pa.types.is_list(field.type) and textual:
            continue
        try:
            pa.nulls(0, have).cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise SchemaError(
                f"{what}: column {field.name!r} has type {have}, expected {field.type}"
            ) from None
        if pa.types.is_floating(field.type) and textual:
            raise SchemaError(f"{what}: column {field.name!r} has type {have}, expected {field.type}")


def validate_emr(table: pa.Table, drug_counts: np.ndarray, min_drugs: int = 2,
                 source: str = "") -> tuple[np.ndarray, pa.Table]:
    """Row-level checks of conformed EMR records.

    Args:
        table: ``B`` records already cast to :data:`EMR_SCHEMA`.
        drug_counts: ``[B]`` number of distinct drugs per record after normalization.
        min_drugs: Minimum number of distinct drugs.
        source: Where the rows came from (file name), stored with the rejects.

    Returns:
        ``(good, rejects)``: ``good`` is a ``[B]`` bool mask; ``rejects`` holds one row per
        bad record (first failing check) with the record id, the field and the reason.
        Duplicated ``record_id`` values are checked globally by the caller.
    """
    from dpr_dist.data.documents import lab_levels

    n = table.num_rows
    reasons = np.full(n, None, dtype=object)
    fields_ = np.full(n, None, dtype=object)

    def mark(mask: np.ndarray, field: str, reason) -> None:
        new = mask & (reasons == None)  # noqa: E711
        if new.any():
            fields_[new] = field
            if callable(reason):
                reasons[new] = [reason(i) for i in np.flatnonzero(new)]
            else:
                reasons[new] = reason

    def blank(name: str) -> np.ndarray:
        col = table[name].combine_chunks()
        empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0)
        return pc.fill_null(pc.or_kleene(pc.is_null(col), empty), True).to_numpy(zero_copy_only=False)

    mark(blank("record_id"), "record_id", "missing record id")
    mark(blank("patient_id"), "patient_id", "missing patient id")
    mark(pc.is_null(table["gender"]).to_numpy(zero_copy_only=False), "gender", "missing gender")
    age = table["age"].combine_chunks()
    age_np = pc.fill_null(age, np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    with np.errstate(invalid="ignore"):
        mark(~np.isfinite(age_np), "age", "missing age")
        mark((age_np < 0) | (age_np > 120), "age", "age out of range [0, 120]")
    mark(pc.is_null(table["drugs"]).to_numpy(zero_copy_only=False), "drugs", "missing drug list")
    _, bad_lab, bad_idx = lab_levels(table["labs"].combine_chunks())
    mark(bad_lab, "labs", lambda i: f"unparseable lab at position {bad_idx[i]} "
         "(unknown flag, missing name, non-numeric value or ref_low > ref_high)")
    mark(np.asarray(drug_counts) < min_drugs, "drugs",
         f"fewer than {min_drugs} distinct drugs after normalization")
    good = reasons == None  # noqa: E711
    bad = np.flatnonzero(~good)
    rejects = pa.table(
        {
            "source": pa.array([source] * len(bad), pa.string()),
            "row": pa.array(bad, pa.int64()),
            "record_id": table["record_id"].take(pa.array(bad, pa.int64())).combine_chunks()
            if len(bad) else pa.array([], pa.string()),
            "field": pa.array(fields_[bad].tolist(), pa.string()),
            "reason": pa.array(reasons[bad].tolist(), pa.string()),
        },
        schema=REJECTS_SCHEMA,
    )
    return good, rejects
