"""Patients and drug names as the model takes them: the same rules as ``dpr prepare``.

* :func:`patients_table` -- patient dicts (API requests) as an Arrow table in the EMR
  contract without ``drugs``;
* :func:`prepare_table` -- validation with the contract's rules
  (:func:`~dpr_dist.data.schema.validate_emr`: ids, gender, age in ``[0, 120]``, labs),
  disease documents, note encoding and document ids over a model's vocabulary, exactly as
  :func:`dpr_dist.data.prepare_batches.clean_batch` and ``build_batch`` do; bad rows become rejects
  naming the record and the field;
* :class:`DrugResolver` -- drug names as prescribed (strengths, forms, salts, aliases)
  onto a model's drug vocabulary with :class:`~dpr_dist.data.normalize.DrugNormalizer`.

Messages name records and fields, never a note or a lab value.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpr_dist.data.documents import disease_documents, encode_notes
from dpr_dist.data.normalize import DrugNormalizer, normalize_drug
from dpr_dist.data.schema import EMR_SCHEMA, REJECTS_SCHEMA, conform, validate_emr

#: Required patient fields: the EMR contract's required columns without ``drugs``.
PATIENT_REQUIRED = ("record_id", "patient_id", "gender", "age")
#: The EMR contract without ``drugs``.
PATIENT_SCHEMA = pa.schema([f for f in EMR_SCHEMA if f.name != "drugs"])
#: Columns of :func:`prepare_table`'s output.
PREPARED_COLUMNS = ("row", "record_id", "patient_id", "doc_ids", "note")


class InputError(ValueError):
    """A request or record the model cannot take, naming the field (and the record).

    Attributes:
        field: Dotted field name, e.g. ``"drugs[2]"`` or ``"age"``.
        record_id: The record, when known.
    """

    def __init__(self, field: str, message: str, record_id: str | None = None) -> None:
        self.field, self.record_id, self.message = field, record_id, message
        who = f"record {record_id!r}: " if record_id else ""
        super().__init__(f"{who}{field}: {message}")


def _naive_utc(value: Any) -> _dt.datetime | None:
    """An ISO string or datetime as a naive UTC datetime (the contract's ``timestamp[us]``)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return value


def patients_table(patients: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Patient dicts (the fields of :class:`~dpr_dist.serve.api.Patient`) as an Arrow table."""
    rows = [{k: p.get(k) for k in PATIENT_SCHEMA.names} for p in patients]
    for r in rows:
        if r["labs"] is None:
            r["labs"] = []
        r["admit_time"] = _naive_utc(r["admit_time"])
    return pa.Table.from_pylist(rows, schema=PATIENT_SCHEMA)


def prepare_table(table: pa.Table, doc_vocab: pa.Array, note_max_len: int,
                  source: str = "") -> tuple[pa.Table, pa.Table]:
    """Validate EMR-contract rows (``drugs`` ignored) and encode them as model inputs.

    Args:
        table: ``B`` rows with at least :data:`PATIENT_REQUIRED`; other contract
            columns are optional, unknown columns are ignored.
        doc_vocab: The model's disease-document tokens (``vocab/doc_words.parquet``);
            tokens outside it are dropped, as in ``dpr prepare``.
        note_max_len: Notes are cut to this many characters (``data.note_max_len``).
        source: Where the rows come from (stored with the rejects).

    Returns:
        ``(prepared, rejects)``: ``prepared`` has :data:`PREPARED_COLUMNS` for the
        good rows (``row`` = position in ``table``); ``rejects`` has
        :data:`~dpr_dist.data.schema.REJECTS_SCHEMA` rows naming the record and
        field of each bad row.

    Raises:
        SchemaError: when a required column is missing or a column has a type the
            contract cannot take (a file-level problem).
    """
    known = [c for c in table.column_names if c in EMR_SCHEMA.names and c != "drugs"]
    table = conform(table.select(known), PATIENT_SCHEMA, PATIENT_REQUIRED, source or "patients")
    n = table.num_rows
    empty = pa.array([[]] * n, pa.list_(pa.string()))
    full = table.append_column("drugs", empty).select(EMR_SCHEMA.names)
    good, rejects = validate_emr(full, np.zeros(n, np.int64), min_drugs=0, source=source)
    rows = np.flatnonzero(good)
    ok = table.take(pa.array(rows, pa.int64()))
    docs = disease_documents(ok)
    flat = pc.index_in(docs.flatten(), value_set=doc_vocab)
    owner = pc.list_parent_indices(docs).to_numpy()
    keep = pc.is_valid(flat).to_numpy(zero_copy_only=False)
    off = np.concatenate([[0], np.cumsum(np.bincount(owner[keep], minlength=len(rows)))]).astype(np.int32)
    doc_ids = pa.ListArray.from_arrays(pa.array(off), flat.filter(pa.array(keep)).cast(pa.int32()))
    prepared = pa.table({
        "row": pa.array(rows, pa.int64()),
        "record_id": ok["record_id"].combine_chunks(),
        "patient_id": ok["patient_id"].combine_chunks(),
        "doc_ids": doc_ids,
        "note": encode_notes(ok["note"].combine_chunks(), note_max_len),
    })
    return prepared, rejects.cast(REJECTS_SCHEMA)


class DrugResolver:
    """Drug names as prescribed -> drug ids of a model's vocabulary.

    Args:
        names: ``[M]`` the model's drug names (``vocab/drugs.parquet``).
        aligned: ``[M]`` whether each drug is an interaction-table drug (wins ties).
    """

    def __init__(self, names: Sequence[str], aligned: Sequence[bool] = ()) -> None:
        self.names = [str(n) for n in names]
        self._ids = {n: i for i, n in enumerate(self.names)}
        self.normalizer = DrugNormalizer(self.names, prefer=[n for n, a in zip(self.names, aligned) if a])

    def __contains__(self, name: str) -> bool:
        return name in self._ids

    def resolve(self, names: Sequence[str], field: str = "drugs", record_id: str | None = None) -> np.ndarray:
        """Drug ids of a proposed package, names normalized as in ``dpr prepare``.

        Returns:
            Sorted unique drug ids (names normalizing to the same drug count once).

        Raises:
            InputError: naming ``field[i]`` for a name that is no drug or not in the
                model's vocabulary.
        """
        ids = []
        for i, raw in enumerate(names):
            hit = self._ids.get(raw)
            if hit is None:
                canon = self.normalizer(raw)
                if not canon:
                    raise InputError(f"{field}[{i}]", f"{raw!r} is not a drug name", record_id)
                hit = self._ids.get(canon)
                if hit is None:
                    raise InputError(f"{field}[{i}]", f"unknown drug {raw!r} (normalized {normalize_drug(raw)!r}): "
                                     "not in the model's drug vocabulary", record_id)
            ids.append(hit)
        if not ids:
            raise InputError(field, "the package is empty", record_id)
        return np.unique(np.asarray(ids, np.int64))
