"""Disease documents and note character sequences (paper 3.1).

A record's *disease document* is the bag of demographic tokens (``gender:f``,
``age:teenager``, ``insurance:medicare``, ``surgery:yes``) plus one ``lab:<name>:<level>``
token per abnormal lab result (level ``high``, ``low`` or ``abnormal``). Admission notes
are lowercased, stripped of punctuation and encoded as character ids over a fixed
alphabet, padded and cut to a configured length downstream.

Everything here is vectorized over Arrow arrays of a batch of records.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LAB_FLAGS = ("normal", "high", "low", "abnormal")

#: Age groups of the demographic document, as (upper bound exclusive, name).
AGE_GROUPS = ((1.0, "infant"), (6.0, "child"), (13.0, "schoolchild"), (18.0, "teenager"),
              (40.0, "young_adult"), (65.0, "middle_aged"), (80.0, "elderly"), (200.0, "very_elderly"))

#: The note alphabet: 0 is padding, then space, digits, latin letters; 39 = any other letter.
NOTE_ALPHABET = " 0123456789abcdefghijklmnopqrstuvwxyz"
NOTE_OTHER = len(NOTE_ALPHABET) + 1
NOTE_VOCAB_SIZE = NOTE_OTHER + 1
_CHAR_IDS = {c: i + 1 for i, c in enumerate(NOTE_ALPHABET)}
_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACES = re.compile(r"\s+")


def _token_part(arr: pa.Array) -> pa.Array:
    """Lowercase, trim and replace inner whitespace/colons so a value fits in a token."""
    arr = pc.utf8_lower(pc.utf8_trim_whitespace(arr.cast(pa.string())))
    return pc.replace_substring_regex(arr, r"[\s:]+", "_")


def age_group(age: np.ndarray) -> np.ndarray:
    """Map ages in years to age-group names. Shape ``[B] -> [B]`` (object array)."""
    bounds = np.array([b for b, _ in AGE_GROUPS])
    names = np.array([n for _, n in AGE_GROUPS], dtype=object)
    idx = np.searchsorted(bounds, np.asarray(age, dtype=np.float64), side="right")
    return names[np.minimum(idx, len(names) - 1)]


def lab_levels(labs: pa.ListArray) -> tuple[pa.ListArray, np.ndarray, np.ndarray]:
    """Level of every lab result, and which records hold an unparseable lab.

    The level is the flag when it is ``normal``, ``high`` or ``low``; when the flag is null
    or ``abnormal`` it comes from ``value`` against ``ref_low`` / ``ref_high``; an
    ``abnormal`` flag without a usable range stays ``abnormal``, a null flag without one
    carries no information (level null).

    Args:
        labs: ``list<struct<name, value, ref_low, ref_high, flag>>`` of ``B`` records.

    Returns:
        ``(levels, bad, bad_index)``: ``levels`` is a list array parallel to ``labs``
        holding ``normal/high/low/abnormal`` or null per lab; ``bad`` is a ``[B]`` bool
        mask of records with an unparseable lab; ``bad_index`` gives, per record, the
        position of its first bad lab (-1 if none).
    """
    labs = labs.combine_chunks() if isinstance(labs, pa.ChunkedArray) else labs
    n = len(labs)
    offsets = labs.offsets.to_numpy(zero_copy_only=False)
    flat = labs.flatten()
    owner = np.repeat(np.arange(n), np.diff(offsets)) if n else np.zeros(0, dtype=np.int64)
    if len(flat) == 0:
        empty = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array([], pa.string()))
        return empty, np.zeros(n, bool), np.full(n, -1)
    name = flat.field("name")
    flag = pc.utf8_lower(flat.field("flag").cast(pa.string())).to_numpy(zero_copy_only=False)
    value = flat.field("value").cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    lo = flat.field("ref_low").cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    hi = flat.field("ref_high").cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)

    flag_known = np.array([f is None or f in LAB_FLAGS for f in flag], dtype=bool)
    name_ok = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(name)), 0), False)
    name_ok = name_ok.to_numpy(zero_copy_only=False)
    derive = np.array([f is None or f == "abnormal" for f in flag], dtype=bool)
    with np.errstate(invalid="ignore"):
        has_range = ~np.isnan(lo) | ~np.isnan(hi)
        range_bad = ~np.isnan(lo) & ~np.isnan(hi) & (lo > hi)
        value_bad = derive & has_range & ~np.isfinite(value)
        high = derive & has_range & (value > np.where(np.isnan(hi), np.inf, hi))
        low = derive & has_range & (value < np.where(np.isnan(lo), -np.inf, lo))
    bad_lab = ~flag_known | ~name_ok | range_bad | value_bad | (np.isinf(value))
    level = np.where(np.isin(flag, ["normal", "high", "low"]), flag, None).astype(object)
    level = np.where(derive & has_range, "normal", level)
    level = np.where(high, "high", level)
    level = np.where(low, "low", level)
    level = np.where(derive & ~has_range & (flag == "abnormal"), "abnormal", level)
    level = np.where(bad_lab, None, level)

    bad = np.zeros(n, dtype=bool)
    bad_index = np.full(n, -1, dtype=np.int64)
    if bad_lab.any():
        pos = np.arange(len(flat)) - offsets[owner]
        idx = np.flatnonzero(bad_lab)[::-1]
        bad[owner[idx]] = True
        bad_index[owner[idx]] = pos[idx]  # reversed so the first bad lab wins
    levels = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(level, pa.string()))
    return levels, bad, bad_index


def disease_documents(table: pa.Table) -> pa.ListArray:
    """Disease-document tokens of each record (demographics + abnormal labs).

    Args:
        table: Records conforming to the EMR contract (``B`` rows).

    Returns:
        ``list<string>`` of length ``B``; tokens are unique within a record.
    """
    n = table.num_rows
    gender = pc.fill_null(_token_part(table["gender"].combine_chunks()), "unknown")
    gender = pc.if_else(pc.equal(gender, ""), "unknown", gender)
    ages = pc.fill_null(table["age"].combine_chunks().cast(pa.float64()), -1).to_numpy(zero_copy_only=False)
    age = pa.array(age_group(np.clip(ages, 0, None)), pa.string())
    ins = pc.fill_null(_token_part(table["insurance"].combine_chunks()), "unknown")
    ins = pc.if_else(pc.equal(ins, ""), "unknown", ins)
    surg = table["surgery"].combine_chunks().cast(pa.bool_())
    surg_tok = pc.if_else(pc.is_null(surg), "unknown", pc.if_else(pc.fill_null(surg, False), "yes", "no"))
    demo = [
        pc.binary_join_element_wise("gender", gender, ":"),
        pc.binary_join_element_wise("age", age, ":"),
        pc.binary_join_element_wise("insurance", ins, ":"),
        pc.binary_join_element_wise("surgery", surg_tok, ":"),
    ]
    demo_np = np.stack([d.to_numpy(zero_copy_only=False) for d in demo], axis=1) if n else np.zeros((0, 4), object)

    labs = table["labs"].combine_chunks()
    levels, _, _ = lab_levels(labs)
    lab_offsets = levels.offsets.to_numpy()
    lvl = levels.flatten()
    names = _token_part(labs.flatten().field("name")) if len(lvl) else pa.array([], pa.string())
    abnormal = pc.fill_null(pc.is_in(lvl, pa.array(["high", "low", "abnormal"])), False)
    tokens = pc.binary_join_element_wise("lab", names, lvl, ":").to_numpy(zero_copy_only=False)
    keep = abnormal.to_numpy(zero_copy_only=False)
    out: list[list[str]] = []
    for i in range(n):
        s, e = lab_offsets[i], lab_offsets[i + 1]
        toks = list(demo_np[i])
        toks.extend(dict.fromkeys(tokens[s:e][keep[s:e]]))
        out.append(toks)
    return pa.array(out, pa.list_(pa.string()))


def clean_note(note: str | None) -> str:
    """Lowercase, remove punctuation and meaningless characters, squeeze whitespace."""
    if not note:
        return ""
    return _SPACES.sub(" ", _PUNCT.sub(" ", note.lower())).strip()


def encode_notes(notes: pa.Array, max_len: int) -> pa.ListArray:
    """Character ids of the cleaned notes, cut to ``max_len`` (padding happens at collate).

    Args:
        notes: ``string`` array of ``B`` notes (nulls allowed).
        max_len: Maximum characters kept per note.

    Returns:
        ``list<int8>`` array of length ``B``; an empty list means no note.
    """
    out = []
    for note in notes.to_pylist():
        text = clean_note(note)[:max_len]
        out.append([_CHAR_IDS.get(c, NOTE_OTHER) for c in text])
    return pa.array(out, pa.list_(pa.int8()))
