"""Collating prepared records into model inputs.

A batch of prepared records (an Arrow table in the layout of :mod:`dpr_dist.data.prepare`,
as ``iter_batches(batch_format="pyarrow")`` yields it) becomes

* a :class:`~dpr_dist.models.batch.PatientBatch` (:func:`collate_patients`): the disease
  document as a multi-hot ``[B, V_doc]`` matrix and the note as character ids padded to
  the longest note of the batch ``[B, L]``;
* the patients' own packages as a :class:`~dpr_dist.train.packages.PackageSet`
  (:func:`collate_packages`), from which the distributed negative sampling builds the
  package graphs of a training step;
* the positive drugs of NCF pre-training, padded ``[B, P]`` with a mask
  (:func:`collate_positives`);
* the packages in CSR form (:func:`package_csr`) for candidate indexes and metrics.

Everything is vectorized over the batch; a bad value raises a ``ValueError`` that names
the record id and the field, never a note's content.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from dpr_dist.data.documents import NOTE_VOCAB_SIZE
from dpr_dist.eval.package_csr import PackageCSR
from dpr_dist.models.batch import PatientBatch
from dpr_dist.train.packages import PackageSet

#: Columns a patient needs (encoder input, true package).
PATIENT_COLUMNS = ("record_id", "doc_ids", "note", "drug_ids")
#: Columns of a training record: the patient plus its package graph.
RECORD_COLUMNS = PATIENT_COLUMNS + ("edge_src", "edge_dst", "edge_rel", "edge_p", "edge_w")


def list_column(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Offsets ``[B + 1]`` (int64, from 0) and flat values of a list column.

    Raises:
        ValueError: if the column is missing, naming it, or holds a null list, naming the
            record.
    """
    if name not in table.column_names:
        raise ValueError(f"prepared records have no column {name!r} (have {table.column_names})")
    col = table[name]
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if arr.null_count:
        row = int(np.flatnonzero(~arr.is_valid().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"record {_record_id(table, row)!r}: field {name} is null")
    off = arr.offsets.to_numpy().astype(np.int64)
    values = arr.values.to_numpy(zero_copy_only=False)[off[0]: off[-1]]
    return off - off[0], values


def _record_id(table: pa.Table, row: int) -> str:
    if "record_id" in table.column_names:
        return str(table["record_id"][row].as_py())
    return f"row {row}"


def _check_range(table: pa.Table, name: str, off: np.ndarray, values: np.ndarray, upper: int) -> None:
    bad = np.flatnonzero((values < 0) | (values >= upper))
    if bad.size:
        row = int(np.searchsorted(off, bad[0], side="right") - 1)
        raise ValueError(f"record {_record_id(table, row)!r}: field {name} holds an id outside [0, {upper})")


def collate_patients(table: pa.Table, num_doc_words: int, num_chars: int = NOTE_VOCAB_SIZE) -> PatientBatch:
    """The patients of a batch of records as a :class:`PatientBatch`.

    Args:
        table: ``B`` prepared records with ``doc_ids`` (``list<int32>``) and ``note``
            (``list<int8>`` character ids, empty = no note).
        num_doc_words: Disease-document vocabulary size ``V_doc``.
        num_chars: Character vocabulary size (padding id 0 included).

    Returns:
        ``doc`` ``[B, V_doc]`` float32 multi-hot, ``note`` ``[B, L]`` int64 padded with 0
        to the longest note ``L`` of the batch (``L = 0`` when no record has a note),
        ``note_len`` ``[B]`` int64.

    Raises:
        ValueError: naming the record and the field on an id out of range.
    """
    b = table.num_rows
    doc_off, doc_ids = list_column(table, "doc_ids")
    doc_ids = doc_ids.astype(np.int64)
    _check_range(table, "doc_ids", doc_off, doc_ids, num_doc_words)
    doc = torch.zeros(b, num_doc_words, dtype=torch.float32)
    doc_owner = np.repeat(np.arange(b), np.diff(doc_off))
    doc[torch.from_numpy(doc_owner), torch.from_numpy(doc_ids)] = 1.0

    note_off, chars = list_column(table, "note")
    chars = chars.astype(np.int64)
    _check_range(table, "note", note_off, chars, num_chars)
    lengths = np.diff(note_off)
    width = int(lengths.max()) if b else 0
    note = torch.zeros(b, width, dtype=torch.int64)
    if chars.size:
        owner = np.repeat(np.arange(b), lengths)
        pos = np.arange(chars.size) - note_off[owner]
        note[torch.from_numpy(owner), torch.from_numpy(pos)] = torch.from_numpy(chars)
    return PatientBatch(doc, note, torch.from_numpy(lengths.astype(np.int64)))


def collate_positives(table: pa.Table, num_drugs: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The patients' drugs, padded: NCF's positives (eq. 5).

    Args:
        table: ``B`` prepared records with ``drug_ids``.
        num_drugs: When given, drug ids are checked against ``[0, num_drugs)``.

    Returns:
        ``pos`` ``[B, P]`` int64 (0 on padding) and ``mask`` ``[B, P]`` bool, ``P`` the
        largest package of the batch.

    Raises:
        ValueError: naming the record on an empty package or an id out of range.
    """
    off, ids = list_column(table, "drug_ids")
    _check_packages(table, off, ids, num_drugs)
    sizes = np.diff(off)
    b, width = len(sizes), int(sizes.max()) if len(sizes) else 0
    pos = np.zeros((b, width), dtype=np.int64)
    mask = np.zeros((b, width), dtype=bool)
    owner = np.repeat(np.arange(b), sizes)
    col = np.arange(ids.size) - off[owner]
    pos[owner, col] = ids
    mask[owner, col] = True
    return torch.from_numpy(pos), torch.from_numpy(mask)


def _check_packages(table: pa.Table, off: np.ndarray, ids: np.ndarray, num_drugs: int | None) -> None:
    empty = np.flatnonzero(np.diff(off) == 0)
    if empty.size:
        raise ValueError(f"record {_record_id(table, int(empty[0]))!r}: field drug_ids is empty")
    if num_drugs is not None:
        _check_range(table, "drug_ids", off, ids, num_drugs)


def collate_packages(table: pa.Table, threshold: float | None = None, num_drugs: int | None = None) -> PackageSet:
    """The records' own packages with their graphs (stored edges, optionally re-thresholded).

    Args:
        table: ``B`` prepared records (:data:`RECORD_COLUMNS`).
        threshold: Keep only labelled edges and edges with ``p > threshold``
            (``data.threshold`` above the stored ``data.build_threshold``).
        num_drugs: When given, drug ids are checked against ``[0, num_drugs)``.

    Returns:
        A :class:`PackageSet` of ``B`` packages.
    """
    off, ids = list_column(table, "drug_ids")
    _check_packages(table, off, ids, num_drugs)
    return PackageSet.from_table(table, threshold)


def package_csr(table: pa.Table) -> PackageCSR:
    """The records' packages (``drug_ids``) in CSR form ``(indptr [B + 1], indices [nnz])``."""
    off, ids = list_column(table, "drug_ids")
    return PackageCSR(off, ids.astype(np.int64))
