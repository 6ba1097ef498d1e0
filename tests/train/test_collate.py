"""Collating prepared records into PatientBatch, positives, PackageSets and CSR."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from dpr_dist.data.documents import NOTE_VOCAB_SIZE
from dpr_dist.data.graphs import PairTable, package_edges
from dpr_dist.train.collate import (
    collate_packages, collate_patients, collate_positives, list_column, package_csr)


def records(doc, notes, drugs, rel_p=None) -> pa.Table:
    """Prepared-layout records from python lists (edges from a small fixed R / p)."""
    n = len(drugs)
    cols = {
        "record_id": pa.array([f"R{i}" for i in range(n)]),
        "doc_ids": pa.array(doc, pa.list_(pa.int32())),
        "note": pa.array(notes, pa.list_(pa.int8())),
        "drug_ids": pa.array(drugs, pa.list_(pa.int32())),
    }
    if rel_p is not None:
        relation, cooc = rel_p
        off = np.concatenate([[0], np.cumsum([len(d) for d in drugs])]).astype(np.int64)
        ids = np.concatenate([np.asarray(d, np.int64) for d in drugs])
        e = package_edges(off, ids, relation, cooc, threshold=0.0)

        def lists(values, typ):
            return pa.ListArray.from_arrays(pa.array(e.offsets, pa.int32()), pa.array(values, typ))

        cols.update(edge_src=lists(e.src, pa.int16()), edge_dst=lists(e.dst, pa.int16()),
                    edge_rel=lists(e.rel, pa.int8()), edge_p=lists(e.p, pa.float32()),
                    edge_w=lists(e.w, pa.float32()))
    return pa.table(cols)


def test_patients_multihot_and_padded_notes():
    t = records(doc=[[0, 3], [], [1, 2, 3]], notes=[[5, 6, 7], [], [9]], drugs=[[1, 2], [0, 3], [4, 2]])
    p = collate_patients(t, num_doc_words=5)
    expected = np.array([[1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 1, 1, 1, 0]], np.float32)
    assert p.doc.dtype == torch.float32 and torch.equal(p.doc, torch.from_numpy(expected))
    assert p.note.shape == (3, 3) and p.note.dtype == torch.int64
    assert p.note.tolist() == [[5, 6, 7], [0, 0, 0], [9, 0, 0]]
    assert p.note_len.tolist() == [3, 0, 1]


def test_patients_without_any_note_have_zero_width():
    p = collate_patients(records(doc=[[0], [1]], notes=[[], []], drugs=[[0, 1], [1, 2]]), num_doc_words=2)
    assert p.note.shape == (2, 0) and p.note_len.tolist() == [0, 0]


@pytest.mark.parametrize("field,doc,notes,match", [
    ("doc_ids", [[0], [7]], [[1], [2]], "'R1'.*doc_ids"),
    ("note", [[0], [1]], [[1], [NOTE_VOCAB_SIZE]], "'R1'.*note"),
])
def test_out_of_range_ids_name_record_and_field(field, doc, notes, match):
    with pytest.raises(ValueError, match=match):
        collate_patients(records(doc=doc, notes=notes, drugs=[[0, 1], [1, 2]]), num_doc_words=5)


def test_error_never_echoes_note_content():
    secret = [ord(c) % NOTE_VOCAB_SIZE for c in "hiv"]
    with pytest.raises(ValueError) as err:
        collate_patients(records(doc=[[0], [9]], notes=[secret, secret], drugs=[[0, 1], [1, 2]]), num_doc_words=2)
    assert str(secret) not in str(err.value) and "'R1'" in str(err.value)


def test_positives_padded_with_mask():
    pos, mask = collate_positives(records(doc=[[0]] * 3, notes=[[]] * 3, drugs=[[4, 1, 2], [0, 3], [5]]))
    assert pos.tolist() == [[4, 1, 2], [0, 3, 0], [5, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, True, False], [True, False, False]]


def test_empty_package_and_bad_drug_are_named():
    with pytest.raises(ValueError, match="'R1'.*drug_ids is empty"):
        collate_positives(records(doc=[[0]] * 2, notes=[[]] * 2, drugs=[[1, 2], []]))
    with pytest.raises(ValueError, match="'R0'.*drug_ids"):
        collate_positives(records(doc=[[0]] * 2, notes=[[]] * 2, drugs=[[1, 12], [2, 3]]), num_drugs=6)


def test_packages_keep_graphs_and_rethreshold():
    m = 6
    keys = np.array([0 * m + 3, 1 * m + 2, 2 * m + 1, 3 * m + 0], np.int64)  # sorted
    relation = PairTable(m, np.array([1 * m + 2], np.int64), np.array([2], np.int8))  # 1 -> 2 antagonism
    cooc = PairTable(m, keys, np.array([0.3, 0.5, 0.05, 0.02], np.float32))
    t = records(doc=[[0]] * 2, notes=[[]] * 2, drugs=[[1, 2, 4], [0, 3]], rel_p=(relation, cooc))
    ps = collate_packages(t)
    assert len(ps) == 2 and ps.packages()[0].tolist() == [1, 2, 4]
    assert np.diff(ps.edge_ptr).tolist() == [2, 2]
    high = collate_packages(t, threshold=0.1)  # keeps the labelled edge and p in {0.3}
    edges = {(int(high.drug[high.node_ptr[g] + s]), int(high.drug[high.node_ptr[g] + d]))
             for g in range(2) for s, d in zip(high.src[high.edge_ptr[g]:high.edge_ptr[g + 1]],
                                               high.dst[high.edge_ptr[g]:high.edge_ptr[g + 1]])}
    assert edges == {(1, 2), (0, 3)}


def test_package_csr_and_list_column():
    t = records(doc=[[0]] * 3, notes=[[]] * 3, drugs=[[4, 1], [0], [2, 3, 5]])
    csr = package_csr(t.slice(1))  # offsets restart at 0 for a slice
    assert csr.indptr.tolist() == [0, 1, 4] and csr.indices.tolist() == [0, 2, 3, 5]
    with pytest.raises(ValueError, match="no column 'edge_src'"):
        list_column(t, "edge_src")
