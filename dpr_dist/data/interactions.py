"""Interaction labels: the reviewed template table, description classification, label codes.

The DrugBank interaction text follows 86 sentence templates. The repository keeps a
reviewed, versioned table (``resources/ddi_templates.csv``) that gives each template the
paper's label (synergism / antagonism / none, paper 3.1 and Table 2), its direction, its
kind and a regular expression recognising the filled-in sentence. This module loads that
table (optionally under another policy for the adverse-effect templates), classifies
free-text descriptions with its patterns, and fills in missing labels of an interaction
table.

Labels follow the relation matrix ``R`` of paper 3.2: ``none`` 0, ``synergism`` 1,
``antagonism`` 2, unknown -1; the direction goes from the acting drug to the affected drug.
"""

from __future__ import annotations

import csv
import functools
import io as _io
import re
from importlib import resources
from typing import Iterable, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpr_dist.data.schema import DDI_LABELS, DDI_SCHEMA, REJECTS_SCHEMA

__all__ = [
    "ADVERSE_POLICIES", "Classification", "LABEL_CODES", "TEMPLATE_SCHEMA", "classify_description",
    "classify_descriptions", "fill_missing_labels", "label_code", "label_codes", "load_template_table",
]

#: Integer code of each label in the relation matrix (unknown / unlabeled: -1).
LABEL_CODES = {"none": 0, "synergism": 1, "antagonism": 2}

#: Values of the ``adverse`` policy: a label, or ``unlabeled`` to leave the templates out.
ADVERSE_POLICIES = ("antagonism", "synergism", "none", "unlabeled")

TEMPLATE_SCHEMA = pa.schema([
    pa.field("type", pa.int32(), nullable=False),
    pa.field("label", pa.string()),
    pa.field("direction", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("pattern", pa.string(), nullable=False),
    pa.field("rationale", pa.string()),
])
DIRECTIONS = ("forward", "reverse", "both")
KINDS = ("effect", "exposure", "toxicity", "risk", "none")


def _read_template_text(path: str | None) -> tuple[str, str]:
    if path is None:
        text = resources.files("dpr_dist.data.resources").joinpath("ddi_templates.csv").read_text("utf-8")
        return text, "dpr_dist/data/resources/ddi_templates.csv"
    from dpr_dist.data.io import filesystem

    fs, p = filesystem(str(path))
    with fs.open_input_stream(p) as fh:
        return fh.read().decode("utf-8"), str(path)


def load_template_table(path: str | None = None, *, adverse: str | None = None,
                        adverse_kinds: Iterable[str] = ("risk",)) -> pa.Table:
    """Load the template -> label table, optionally relabelling the adverse templates.

    Args:
        path: A CSV in the format of ``resources/ddi_templates.csv`` (``#`` lines are
            comments, ``# version: V`` gives the version); default the packaged table.
        adverse: Policy for templates whose ``kind`` is in ``adverse_kinds``: one of
            :data:`ADVERSE_POLICIES`; None keeps the table's reviewed labels (the packaged
            table leaves the ``risk`` templates unlabeled).
        adverse_kinds: Kinds the policy applies to: ``("risk",)`` (the "risk or severity of
            ... can be increased" and hypersensitivity templates), optionally ``"toxicity"``
            ("may increase the nephrotoxic activities of ...").

    Returns:
        A table with :data:`TEMPLATE_SCHEMA` (one row per type, sorted), schema metadata
        ``version``, ``source`` and ``adverse``; ``label`` is null where unlabeled.

    Raises:
        ValueError: naming the line and the column on a malformed table (bad type, duplicated
            type, unknown label / direction / kind, pattern that does not compile or lacks
            the ``d1`` / ``d2`` groups) or an unknown policy.
    """
    if adverse is not None and adverse not in ADVERSE_POLICIES:
        raise ValueError(f"adverse policy must be one of {ADVERSE_POLICIES}, got {adverse!r}")
    kinds = set(adverse_kinds)
    if kinds - set(KINDS):
        raise ValueError(f"adverse_kinds must be among {KINDS}, got {sorted(kinds)}")
    text, source = _read_template_text(path)
    version = ""
    body, line_no = [], []
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            m = re.match(r"#\s*version:\s*(\S+)", line)
            if m:
                version = m.group(1)
        elif line.strip():
            body.append(line)
            line_no.append(i)
    reader = csv.DictReader(_io.StringIO("\n".join(body)))
    missing = set(TEMPLATE_SCHEMA.names) - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"{source}: missing column(s) {sorted(missing)}")
    cols: dict[str, list] = {name: [] for name in TEMPLATE_SCHEMA.names}
    seen: set[int] = set()
    for row in reader:
        where = f"{source} line {line_no[reader.line_num - 1]}"
        try:
            t = int(row["type"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: column 'type' must be an integer, got {row['type']!r}") from None
        if t in seen:
            raise ValueError(f"{where}: type {t} appears twice")
        seen.add(t)
        label = (row["label"] or "").strip().lower() or None
        if label is not None and label not in LABEL_CODES:
            raise ValueError(f"{where}: column 'label' must be one of {DDI_LABELS} or empty, got {label!r}")
        direction, kind = row["direction"].strip().lower(), row["kind"].strip().lower()
        if direction not in DIRECTIONS:
            raise ValueError(f"{where}: column 'direction' must be one of {DIRECTIONS}, got {direction!r}")
        if kind not in KINDS:
            raise ValueError(f"{where}: column 'kind' must be one of {KINDS}, got {kind!r}")
        pattern = row["pattern"]
        try:
            groups = re.compile(pattern).groupindex
        except re.error as exc:
            raise ValueError(f"{where}: column 'pattern' does not compile ({exc})") from None
        if not {"d1", "d2"} <= set(groups):
            raise ValueError(f"{where}: column 'pattern' needs the named groups d1 and d2")
        if adverse is not None and kind in kinds:
            label = None if adverse == "unlabeled" else adverse
        for name, value in zip(TEMPLATE_SCHEMA.names, (t, label, direction, kind, pattern, row["rationale"])):
            cols[name].append(value)
    table = pa.table(cols, schema=TEMPLATE_SCHEMA).sort_by("type")
    meta = {"version": version, "source": source, "adverse": adverse or "table"}
    return table.replace_schema_metadata(meta)


def label_code(label: str | None) -> int:
    """Relation-matrix code of a label: none 0, synergism 1, antagonism 2, else -1."""
    if label is None:
        return -1
    return LABEL_CODES.get(str(label).strip().lower(), -1)


def label_codes(labels: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Vectorized :func:`label_code`: ``[N]`` int8 codes (unknown and null -> -1)."""
    idx = pc.index_in(pc.utf8_lower(pc.utf8_trim_whitespace(labels.cast(pa.string()))),
                      value_set=pa.array(list(LABEL_CODES)))
    return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int8)


class Classification(NamedTuple):
    """What a description says: template ``type`` (None if no template matched), ``label``
    (None if unlabeled), ``actor`` and ``affected`` names (the direction of the
    interaction; for undirected templates the names in sentence order) and ``symmetric``."""

    type: int | None
    label: str | None
    actor: str | None
    affected: str | None
    symmetric: bool


@functools.lru_cache(maxsize=1)
def _default_table() -> pa.Table:
    return load_template_table()


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)


def _orient(direction: str, d1: str | None, d2: str | None) -> tuple[str | None, str | None]:
    return (d2, d1) if direction == "reverse" else (d1, d2)


def classify_description(text: str | None, table: pa.Table | None = None) -> Classification:
    """Classify one free-text interaction description by the template patterns.

    Example::

        classify_description("Doxepin may decrease the hypoglycemic activities of Repaglinide.")
        # Classification(type=902, label='antagonism', actor='Doxepin', affected='Repaglinide',
        #                symmetric=False)

    Args:
        text: A filled-in template sentence.
        table: A table from :func:`load_template_table`; default the packaged table.

    Returns:
        The :class:`Classification`; all fields None when no template matches.
    """
    table = _default_table() if table is None else table
    if text:
        text = text.strip()
        for t, label, direction, pattern in zip(table["type"].to_pylist(), table["label"].to_pylist(),
                                                table["direction"].to_pylist(), table["pattern"].to_pylist()):
            m = _compiled(pattern).match(text)
            if m:
                actor, affected = _orient(direction, m.group("d1").strip(), m.group("d2").strip())
                return Classification(t, label, actor, affected, direction == "both")
    return Classification(None, None, None, None, False)


def classify_descriptions(texts: pa.Array | pa.ChunkedArray, table: pa.Table | None = None) -> pa.Table:
    """Vectorized :func:`classify_description` over ``N`` descriptions (Arrow RE2).

    Returns:
        A table of ``N`` rows: ``type`` (int32, null when no template matched), ``label``,
        ``actor``, ``affected`` (strings) and ``symmetric`` (bool).
    """
    table = _default_table() if table is None else table
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = pc.utf8_trim_whitespace(texts.cast(pa.string()))
    n = len(texts)
    typ = np.full(n, -1, np.int32)
    actor = np.full(n, None, dtype=object)
    affected = np.full(n, None, dtype=object)
    todo = pc.is_valid(texts).to_numpy(zero_copy_only=False)
    for t, direction, pattern in zip(table["type"].to_pylist(), table["direction"].to_pylist(),
                                     table["pattern"].to_pylist()):
        idx = np.flatnonzero(todo)
        if not len(idx):
            break
        sub = texts.take(pa.array(idx))
        hit = pc.fill_null(pc.match_substring_regex(sub, pattern, ignore_case=True), False)
        hit = hit.to_numpy(zero_copy_only=False)
        if not hit.any():
            continue
        rows = idx[hit]
        groups = pc.extract_regex(sub.filter(pa.array(hit)), "(?i)" + pattern)
        d1 = pc.utf8_trim_whitespace(groups.field("d1")).to_numpy(zero_copy_only=False)
        d2 = pc.utf8_trim_whitespace(groups.field("d2")).to_numpy(zero_copy_only=False)
        actor[rows], affected[rows] = _orient(direction, d1, d2)
        typ[rows] = t
        todo[rows] = False
    labels = dict(zip(table["type"].to_pylist(), table["label"].to_pylist()))
    dirs = dict(zip(table["type"].to_pylist(), table["direction"].to_pylist()))
    matched = typ >= 0
    return pa.table({
        "type": pa.array(typ, pa.int32(), mask=~matched),
        "label": pa.array([labels.get(t) if ok else None for t, ok in zip(typ.tolist(), matched)], pa.string()),
        "actor": pa.array(actor.tolist(), pa.string()),
        "affected": pa.array(affected.tolist(), pa.string()),
        "symmetric": pa.array([dirs.get(t) == "both" for t in typ.tolist()], pa.bool_()),
    })


def _name_keys(arr: pa.Array, normalizer) -> np.ndarray:
    if normalizer is None:
        from dpr_dist.data.normalize import normalize_drug as normalizer
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    enc = pc.dictionary_encode(arr.cast(pa.string()))
    mapped = np.array([normalizer(v) for v in enc.dictionary.to_pylist()] + [None], dtype=object)
    codes = pc.fill_null(enc.indices, len(mapped) - 1).to_numpy(zero_copy_only=False)
    return mapped[codes]


def fill_missing_labels(ddi: pa.Table, table: pa.Table | None = None, *, normalizer=None,
                        source: str = "interactions") -> tuple[pa.Table, pa.Table]:
    """Label the rows whose ``label`` is null from their ``description``.

    A row's direction comes from the sentence: when it names ``drug_b`` as the acting drug
    the row is turned around; an undirected template also adds the reverse row (when that
    ordered pair is not in the table already). Names are compared after ``normalizer``
    (default :func:`~dpr_dist.data.normalize.normalize_drug`).

    Args:
        ddi: Interaction rows with ``drug_a``, ``drug_b``, ``label``, ``description``
            (:data:`~dpr_dist.data.schema.DDI_SCHEMA`; other columns are dropped).
        table: Template table (:func:`load_template_table`); default the packaged one.
        normalizer: ``str -> str`` used to compare sentence names with the row's names.
        source: Stored in the rejects' ``source`` column.

    Returns:
        ``(labelled, rejects)``: rows with a label (given or derived), and rows that could not
        be labelled, in :data:`~dpr_dist.data.schema.REJECTS_SCHEMA` (``row`` = index in
        ``ddi``, ``record_id`` = ``"drug_a->drug_b"``, the field and the reason).
    """
    missing_cols = [f.name for f in DDI_SCHEMA if f.name not in ddi.column_names]
    if missing_cols:
        raise ValueError(f"{source}: missing column(s) {missing_cols}; see docs/data-contract.md")
    plain = pa.schema([pa.field(f.name, f.type) for f in DDI_SCHEMA])
    ddi = ddi.select(plain.names).cast(plain).combine_chunks()
    missing = pc.is_null(ddi["label"]).to_numpy(zero_copy_only=False)
    if not missing.any():
        return ddi, REJECTS_SCHEMA.empty_table()
    rows = np.flatnonzero(missing)
    sub = ddi.take(pa.array(rows))
    cls = classify_descriptions(sub["description"], table)
    a = _name_keys(sub["drug_a"].combine_chunks(), normalizer)
    b = _name_keys(sub["drug_b"].combine_chunks(), normalizer)
    act = _name_keys(cls["actor"], normalizer)
    aff = _name_keys(cls["affected"], normalizer)
    no_text = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(sub["description"])), 0),
                           True).to_numpy(zero_copy_only=False)
    matched = cls["type"].is_valid().to_numpy(zero_copy_only=False)
    labelled = cls["label"].is_valid().to_numpy(zero_copy_only=False)
    forward = (act == a) & (aff == b)
    backward = (act == b) & (aff == a)
    symmetric = cls["symmetric"].to_numpy(zero_copy_only=False)
    ok = matched & labelled & (forward | backward)

    reason = np.full(len(rows), None, dtype=object)
    field = np.full(len(rows), None, dtype=object)
    types = cls["type"].to_pylist()
    reason[no_text] = "label is missing and there is no description to classify"
    field[no_text] = "label"
    m = ~no_text & ~matched
    reason[m], field[m] = "label is missing and the description matches no interaction template", "description"
    m = matched & ~labelled
    reason[m] = [f"label is missing and template type {types[i]} is unlabeled under the adverse policy"
                 for i in np.flatnonzero(m)]
    field[m] = "label"
    m = matched & labelled & ~(forward | backward)
    reason[m], field[m] = "the description names drugs other than drug_a and drug_b", "description"

    swap = pa.array(ok & backward & ~symmetric)
    drug_a, drug_b = sub["drug_a"].combine_chunks(), sub["drug_b"].combine_chunks()
    fixed = pa.table({"drug_a": pc.if_else(swap, drug_b, drug_a), "drug_b": pc.if_else(swap, drug_a, drug_b),
                      "label": cls["label"], "description": sub["description"]}).filter(pa.array(ok))
    both = fixed.filter(pa.array(symmetric[ok]))
    reverse = both.select(["drug_b", "drug_a", "label", "description"]).rename_columns(plain.names)
    if reverse.num_rows:  # add B->A for undirected sentences unless the table has that pair
        pairs = set(zip(ddi["drug_a"].to_pylist(), ddi["drug_b"].to_pylist()))
        new = [(x, y) not in pairs for x, y in zip(reverse["drug_a"].to_pylist(), reverse["drug_b"].to_pylist())]
        reverse = reverse.filter(pa.array(new, pa.bool_()))
    out = pa.concat_tables([ddi.filter(pa.array(~missing)), fixed.cast(plain), reverse.cast(plain)])

    bad = np.flatnonzero(~ok)
    take = pa.array(bad, pa.int64())
    rid = pc.binary_join_element_wise(drug_a.take(take), drug_b.take(take), "->")
    rejects = pa.table({
        "source": pa.array([source] * len(bad), pa.string()),
        "row": pa.array(rows[bad], pa.int64()),
        "record_id": rid.cast(pa.string()),
        "field": pa.array(field[bad].tolist(), pa.string()),
        "reason": pa.array(reason[bad].tolist(), pa.string()),
    }, schema=REJECTS_SCHEMA)
    return out, rejects
