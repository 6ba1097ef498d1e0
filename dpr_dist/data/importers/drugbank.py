"""DrugBank interaction pairs -> the interaction contract (``dpr import drugbank-ddi``).

Inputs (see ``../shared/data/SOURCES.md``):

* ``pairs``: tab-separated ``drug1, drug2, Label`` (DrugBank ids and a type 1-86), the
  DeepDDI DrugBank set.
* ``types``: ``Interaction type, Description, Subject`` - the sentence template of each type
  with ``#Drug1`` / ``#Drug2`` placeholders. ``Subject`` says which column of the pairs
  file fills ``#Drug1``: 1 = ``drug1``, 2 = ``drug2``, 3 = undirected template (file order).
  (Checked against pharmacology: for type 6, "#Drug1 may increase the anticoagulant
  activities of #Drug2", Subject 2, the pair (Warfarin, Acetylsalicylic acid) reads
  "Acetylsalicylic acid may increase the anticoagulant activities of Warfarin".)
* ``vocab``: DrugBank vocabulary, id -> ``Common name``.

Each pair gets the label and direction of its template from the reviewed table
(:func:`~dpr_dist.data.interactions.load_template_table`): forward templates give one row
from the acting drug (``#Drug1``) to the affected drug (``#Drug2``), undirected ones a row
each way, unlabeled ones (by default the "risk or severity" templates) are left out and
counted. The description is the template with the common names filled in. The same ordered
pair reached twice keeps one row; when the labels disagree the row with precedence
antagonism > synergism > none is kept and the others go to the rejects with the reason.

Everything is vectorized (Arrow compute + numpy); the 192k DrugBank pairs take about a
second.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dpr_dist.data import io
from dpr_dist.data.interactions import LABEL_CODES, classify_description, load_template_table
from dpr_dist.data.schema import DDI_SCHEMA, REJECTS_SCHEMA

__all__ = ["drugbank_ddi_table", "import_drugbank_ddi", "read_pairs", "read_types", "read_vocabulary"]

log = logging.getLogger(__name__)
_PRECEDENCE = {"antagonism": 3, "synergism": 2, "none": 1}


def _read_csv(uri: str, delimiter: str = ",") -> pa.Table:
    fs, path = io.filesystem(uri)
    compression = "gzip" if str(uri).endswith(".gz") else None
    with fs.open_input_stream(path, compression=compression) as fh:
        return pacsv.read_csv(fh, parse_options=pacsv.ParseOptions(delimiter=delimiter),
                              convert_options=pacsv.ConvertOptions(strings_can_be_null=True))


def _column(table: pa.Table, uri: str, *names: str) -> pa.ChunkedArray:
    lower = {c.strip().lower(): c for c in table.column_names}
    for name in names:
        if name.lower() in lower:
            return table[lower[name.lower()]]
    raise ValueError(f"{uri}: missing column {names[0]!r} (have {table.column_names})")


def read_pairs(uri: str) -> pa.Table:
    """Read the pairs file: ``drug1``, ``drug2`` (string ids), ``type`` (int32)."""
    raw = _read_csv(uri, delimiter="\t")
    try:
        typ = _column(raw, uri, "Label", "type", "Y").cast(pa.int32())
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{uri}: column 'Label' must hold integer interaction types ({exc})") from None
    return pa.table({"drug1": _column(raw, uri, "drug1", "Drug1_ID").cast(pa.string()),
                     "drug2": _column(raw, uri, "drug2", "Drug2_ID").cast(pa.string()),
                     "type": typ}).combine_chunks()


def read_types(uri: str) -> pa.Table:
    """Read the template file: ``type`` (int32), ``template`` (string), ``subject`` (int8).

    Raises:
        ValueError: naming the type when a template lacks ``#Drug1`` / ``#Drug2``, a type
            repeats or ``Subject`` is not 1, 2 or 3.
    """
    raw = _read_csv(uri)
    typ = _column(raw, uri, "Interaction type", "type").cast(pa.int32())
    template = _column(raw, uri, "Description", "template").cast(pa.string())
    try:
        subject = _column(raw, uri, "Subject").cast(pa.int8())
    except ValueError:
        log.warning("%s: no Subject column; #Drug1 is taken from column drug1 for every type", uri)
        subject = pa.chunked_array([pa.array(np.ones(len(typ), np.int8))])
    out = pa.table({"type": typ, "template": template, "subject": subject}).combine_chunks()
    seen: set[int] = set()
    for t, text, s in zip(*(out[c].to_pylist() for c in ("type", "template", "subject"))):
        if t in seen:
            raise ValueError(f"{uri}: interaction type {t} appears twice")
        seen.add(t)
        if not text or "#Drug1" not in text or "#Drug2" not in text:
            raise ValueError(f"{uri}: interaction type {t}: template must contain #Drug1 and #Drug2")
        if s not in (1, 2, 3):
            raise ValueError(f"{uri}: interaction type {t}: Subject must be 1, 2 or 3, got {s}")
    return out


def read_vocabulary(uri: str) -> pa.Table:
    """Read the vocabulary: ``id`` and ``name`` (DrugBank id and common name)."""
    raw = _read_csv(uri)
    return pa.table({"id": _column(raw, uri, "DrugBank ID", "id").cast(pa.string()),
                     "name": _column(raw, uri, "Common name", "name").cast(pa.string())}).combine_chunks()


def _check_templates(types: pa.Table, templates: pa.Table, types_uri: str) -> None:
    """Every type has one template row, and that row's pattern reads the type's sentence."""
    known = set(templates["type"].to_pylist())
    missing = sorted(set(types["type"].to_pylist()) - known)
    if missing:
        raise ValueError(f"template table {templates.schema.metadata.get(b'source', b'').decode()}: no row for "
                         f"interaction type(s) {missing} of {types_uri}")
    for t, text in zip(types["type"].to_pylist(), types["template"].to_pylist()):
        sentence = text.replace("#Drug1", "Drugone").replace("#Drug2", "Drugtwo")
        got = classify_description(sentence, templates.filter(pc.equal(templates["type"], t)))
        if got.type != t:
            raise ValueError(f"template table: the pattern of type {t} does not recognise the sentence of type "
                             f"{t} in {types_uri}; are both numbered the same way?")


def _fill(templates: list[str], type_idx: np.ndarray, d1: pa.Array, d2: pa.Array) -> pa.Array:
    """Fill ``#Drug1`` / ``#Drug2`` per row; rows are grouped by template (vectorized)."""
    out = np.empty(len(type_idx), dtype=object)
    for k, text in enumerate(templates):
        rows = np.flatnonzero(type_idx == k)
        if not len(rows):
            continue
        take = pa.array(rows)
        parts: list[Any] = []
        for piece in re.split(r"(#Drug1|#Drug2)", text):
            if piece == "#Drug1":
                parts.append(d1.take(take))
            elif piece == "#Drug2":
                parts.append(d2.take(take))
            elif piece:
                parts.append(pa.scalar(piece, pa.string()))
        out[rows] = pc.binary_join_element_wise(*parts, "").to_numpy(zero_copy_only=False)
    return pa.array(out.tolist(), pa.string())


def _rejects(source: str, rows: Iterable[int], record_ids: Iterable[str], field: str,
             reasons: Iterable[str]) -> pa.Table:
    rows = list(rows)
    return pa.table({"source": pa.array([source] * len(rows), pa.string()), "row": pa.array(rows, pa.int64()),
                     "record_id": pa.array(list(record_ids), pa.string()),
                     "field": pa.array([field] * len(rows), pa.string()),
                     "reason": pa.array(list(reasons), pa.string())}, schema=REJECTS_SCHEMA)


def drugbank_ddi_table(pairs: str, types: str, vocab: str, *, adverse: str | None = None,
                       templates: str | None = None,
                       adverse_kinds: tuple[str, ...] = ("risk",)) -> tuple[pa.Table, pa.Table, dict]:
    """Build the interaction table without writing it.

    Args:
        pairs: Pairs file (TSV ``drug1, drug2, Label``).
        types: Template file (CSV ``Interaction type, Description, Subject``).
        vocab: DrugBank vocabulary CSV (``DrugBank ID``, ``Common name``).
        adverse: Policy for the adverse templates (see
            :func:`~dpr_dist.data.interactions.load_template_table`): ``antagonism``,
            ``synergism``, ``none`` or ``unlabeled``; None keeps the reviewed table.
        templates: Another template table CSV instead of the packaged one.
        adverse_kinds: Template kinds the policy applies to.

    Returns:
        ``(ddi, rejects, summary)``: ``ddi`` with :data:`DDI_SCHEMA` (one row per ordered
        pair), rejects with :data:`REJECTS_SCHEMA` (``row`` = data row of the pairs file) and
        counts.

    Raises:
        ValueError: when an input misses a column, or the template table does not cover
            (or does not read) every type of the types file.
    """
    t0 = time.perf_counter()
    table = load_template_table(templates, adverse=adverse, adverse_kinds=adverse_kinds)
    tp = read_types(types)
    _check_templates(tp, table, types)
    pr = read_pairs(pairs)
    vc = read_vocabulary(vocab)
    n = pr.num_rows

    # per-pair lookups: template index, vocabulary names
    drug1, drug2 = pr["drug1"].combine_chunks(), pr["drug2"].combine_chunks()
    vc_id, vc_name = vc["id"].combine_chunks(), vc["name"].combine_chunks()
    ti = pc.index_in(pr["type"].combine_chunks(), value_set=tp["type"].combine_chunks())
    name1 = vc_name.take(pc.index_in(drug1, value_set=vc_id))
    name2 = vc_name.take(pc.index_in(drug2, value_set=vc_id))
    bad_type = pc.is_null(ti).to_numpy(zero_copy_only=False)
    bad1 = pc.is_null(name1).to_numpy(zero_copy_only=False)
    bad2 = pc.is_null(name2).to_numpy(zero_copy_only=False) & ~bad1
    bad_type &= ~bad1 & ~bad2
    ids = pc.binary_join_element_wise(drug1, drug2, "->").to_numpy(zero_copy_only=False)
    id1, id2 = drug1.to_numpy(zero_copy_only=False), drug2.to_numpy(zero_copy_only=False)
    type_np = pr["type"].to_numpy()
    unnamed = "DrugBank id {} has no common name in the vocabulary"
    rejects = [
        _rejects(pairs, np.flatnonzero(bad1), ids[bad1], "drug1", [unnamed.format(d) for d in id1[bad1]]),
        _rejects(pairs, np.flatnonzero(bad2), ids[bad2], "drug2", [unnamed.format(d) for d in id2[bad2]]),
        _rejects(pairs, np.flatnonzero(bad_type), ids[bad_type], "Label",
                 [f"interaction type {t} is not in {types}" for t in type_np[bad_type]]),
    ]
    good = np.flatnonzero(~(bad1 | bad2 | bad_type))
    take = pa.array(good)
    k = ti.take(take).to_numpy(zero_copy_only=False).astype(np.int64)

    # the template table, aligned to the types file order
    pos = pc.index_in(tp["type"], value_set=table["type"]).to_numpy(zero_copy_only=False)
    t_label = np.array(table["label"].to_pylist(), dtype=object)[pos]
    t_dir = np.array(table["direction"].to_pylist(), dtype=object)[pos]
    subject = tp["subject"].to_numpy(zero_copy_only=False)[k]
    n1, n2 = name1.take(take), name2.take(take)
    first_is_2 = pa.array(subject == 2)
    d1 = pc.if_else(first_is_2, n2, n1)  # the name that fills #Drug1
    d2 = pc.if_else(first_is_2, n1, n2)
    desc = _fill(tp["template"].to_pylist(), k, d1, d2)
    label = t_label[k]
    direction = t_dir[k]

    labelled = np.array([lab is not None for lab in label], dtype=bool)
    unl_types, unl_counts = np.unique(tp["type"].to_numpy()[k[~labelled]], return_counts=True)
    unlabeled_by_type = {int(t): int(c) for t, c in zip(unl_types, unl_counts)}
    fwd = labelled & (direction != "reverse")
    rev = labelled & (direction != "forward")  # reverse and both
    src_rows = np.concatenate([good[fwd], good[rev]])
    a = pa.concat_arrays([d1.filter(pa.array(fwd)), d2.filter(pa.array(rev))])
    b = pa.concat_arrays([d2.filter(pa.array(fwd)), d1.filter(pa.array(rev))])
    lab = np.concatenate([label[fwd], label[rev]])
    dsc = pa.concat_arrays([desc.filter(pa.array(fwd)), desc.filter(pa.array(rev))])

    # one row per ordered pair: precedence antagonism > synergism > none, then file order
    names = pc.unique(pa.concat_arrays([a, b]))
    ka = pc.index_in(a, value_set=names).to_numpy().astype(np.int64)
    kb = pc.index_in(b, value_set=names).to_numpy().astype(np.int64)
    key = ka * len(names) + kb
    rank = np.array([_PRECEDENCE[x] for x in lab], dtype=np.int64)
    order = np.lexsort((np.arange(len(key)), -rank, key))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    kept_of = np.repeat(order[first], np.diff(np.append(np.flatnonzero(first), len(order))))
    dropped = order[~first]
    conflict = dropped[lab[dropped] != lab[kept_of[~first]]]
    duplicates = len(dropped) - len(conflict)
    pair_ids = pc.binary_join_element_wise(a, b, "->").to_numpy(zero_copy_only=False)
    kept_label = {int(d): lab[kk] for d, kk in zip(dropped, kept_of[~first])}
    rejects.append(_rejects(pairs, src_rows[conflict], pair_ids[conflict], "Label",
                            [f"conflicting label {lab[i]} for an ordered pair already labelled {kept_label[int(i)]} "
                             "(precedence antagonism > synergism > none)" for i in conflict]))
    keep = np.sort(order[first])
    keep = keep[np.argsort(src_rows[keep], kind="stable")]
    idx = pa.array(keep)
    ddi = pa.Table.from_arrays([a.take(idx), b.take(idx), pa.array(lab[keep].tolist(), pa.string()), dsc.take(idx)],
                               schema=DDI_SCHEMA)
    rejects_t = pa.concat_tables(rejects)
    counts = {lbl: int(c) for lbl, c in zip(*np.unique(lab[keep], return_counts=True))} if len(keep) else {}
    meta = table.schema.metadata or {}
    summary = {
        "pairs_read": n,
        "drugs": len(pc.unique(pa.concat_arrays([drug1, drug2]))),
        "drugs_named": len(names),
        "types": tp.num_rows,
        "template_version": meta.get(b"version", b"").decode(),
        "adverse_policy": meta.get(b"adverse", b"").decode(),
        "rows": ddi.num_rows,
        "labels": {name: counts.get(name, 0) for name in LABEL_CODES},
        "unlabeled_pairs": int((~labelled).sum()),
        "unlabeled_by_type": unlabeled_by_type,
        "duplicates_merged": int(duplicates),
        "conflicts": int(len(conflict)),
        "rejected": rejects_t.num_rows,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return ddi, rejects_t, summary


def import_drugbank_ddi(pairs: str, types: str, vocab: str, out: str, *, adverse: str | None = None,
                        templates: str | None = None, adverse_kinds: tuple[str, ...] = ("risk",),
                        rejects_out: str | None = None) -> dict:
    """Convert the DrugBank pairs to the interaction contract and write Parquet.

    Args:
        pairs, types, vocab, adverse, templates, adverse_kinds: See :func:`drugbank_ddi_table`.
        out: Output ``.parquet`` file, or a directory (then ``OUT/ddi.parquet``); local or
            ``s3://``.
        rejects_out: Where to write the rejected pairs (default: not written, only counted).

    Returns:
        The summary dict of :func:`drugbank_ddi_table` plus ``out``.
    """
    ddi, rejects, summary = drugbank_ddi_table(pairs, types, vocab, adverse=adverse, templates=templates,
                                               adverse_kinds=adverse_kinds)
    target = out if str(out).endswith(".parquet") else io.join(out, "ddi.parquet")
    io.write_table(ddi, target)
    if rejects_out:
        io.write_table(rejects, rejects_out)
    log.info("wrote %d interactions to %s (%d pairs rejected)", ddi.num_rows, target, rejects.num_rows)
    return {**summary, "out": target}
