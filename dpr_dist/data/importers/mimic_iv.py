"""MIMIC-IV ``hosp`` tables -> EMR records in the data contract (``dpr import mimic-iv``).

One record per admission (``hadm_id``), for every admission of ``admissions``:

* ``record_id`` = ``hadm_id``, ``patient_id`` = ``subject_id``, ``admit_time`` = ``admittime``;
* ``gender`` from ``patients``; ``age`` = ``anchor_age + (year(admittime) - anchor_year)``;
* ``insurance`` from ``admissions``;
* ``surgery``: the admission was under a surgical service (``services.curr_service`` in
  :data:`SURGICAL_SERVICES`). ``procedures_icd`` is not used by default: in the demo, 104
  of the 187 admissions with an ICD procedure never saw a surgical service and their codes
  are catheters, ventilation, endoscopies and dialysis. ``surgery_from_procedures=True``
  also counts any ICD procedure;
* ``labs``: one entry per lab (``d_labitems.label``, made unique by the fluid when a label
  is used for several fluids, e.g. ``"Glucose (Urine)"``; the ``itemid`` when unlabelled)
  holding the *first* result of the stay (by ``charttime``): the patient's state at
  admission, before the stay's treatment acts on it. ``value`` = ``valuenum``,
  ``ref_low`` / ``ref_high`` = ``ref_range_lower`` / ``ref_range_upper``, ``flag`` =
  ``labevents.flag`` (``abnormal`` or null; downstream derives the level from the value and
  the range). Results without ``hadm_id`` (outpatient labs) are dropped, as are results
  with neither a numeric value nor a flag (free-text results); a result without a numeric
  value keeps its flag but not its range, and an inverted range (low > high) is dropped
  (both would make the validator quarantine the whole record);
* ``drugs``: distinct ``prescriptions.drug`` strings (trimmed), in order of first
  ``starttime``; an admission without prescriptions gets an empty list (the validator
  quarantines it, so every admission is accounted for);
* ``note``: null (the ``hosp`` module has no notes).

``labevents`` (about 120M rows in the full database) and ``prescriptions`` are streamed in
blocks with :func:`pyarrow.csv.open_csv`, gzip decoded on the fly, keeping only the needed
columns and reducing each block to the first row per (admission, lab) or (admission, drug)
at once, so memory grows with the number of distinct pairs, never with the raw table. Lab
values and identifiers other than ids never reach the logs.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from dpr_dist.data import io
from dpr_dist.data.importers.csv_stream import BLOCK, FirstRows, global_codes, read_csv, stream_csv, to_numpy
from dpr_dist.data.schema import EMR_SCHEMA, LAB_TYPE

__all__ = ["SURGICAL_SERVICES", "import_mimic_iv", "mimic_iv_records"]

log = logging.getLogger(__name__)

#: ``services.curr_service`` values of surgical services.
SURGICAL_SERVICES = frozenset({"SURG", "CSURG", "NSURG", "VSURG", "TSURG", "ORTHO"})
_NO_TIME = np.iinfo(np.int64).max


# ----------------------------------------------------------------------------- reading
def _table_uri(root: str, name: str) -> str:
    for suffix in (".csv.gz", ".csv"):
        uri = io.join(root, "hosp", name + suffix)
        if io.exists(uri):
            return uri
    raise FileNotFoundError(f"MIMIC-IV table {name!r} not found: expected {io.join(root, 'hosp', name)}.csv.gz "
                            "(or .csv) under the MIMIC-IV root")



# ----------------------------------------------------------------------------- labs
def _lab_names(root: str) -> tuple[np.ndarray, list[str]]:
    """``(itemids sorted, names)``: label, qualified by fluid when the label is ambiguous."""
    d = read_csv(_table_uri(root, "d_labitems"), {"itemid": pa.int64(), "label": pa.string(), "fluid": pa.string()})
    d = d.sort_by("itemid")
    item = to_numpy(d["itemid"], -1)
    label = [(s or "").strip() for s in d["label"].to_pylist()]
    fluid = [(s or "").strip() for s in d["fluid"].to_pylist()]
    fluids: dict[str, set[str]] = {}
    for lab, fl in zip(label, fluid):
        fluids.setdefault(lab, set()).add(fl)
    names = []
    for it, lab, fl in zip(item.tolist(), label, fluid):
        if not lab:
            names.append(str(it))
        elif len(fluids[lab]) > 1 and fl and fl.lower() != "blood":
            names.append(f"{lab} ({fl})")
        else:
            names.append(lab)
    return item, names


def _labs(root: str, hadm: np.ndarray, block_size: int, compact_rows: int) -> tuple[pa.ListArray, dict]:
    """The ``labs`` column for admissions ``hadm`` (sorted), and counts."""
    item_ids, item_names = _lab_names(root)
    names = sorted(set(item_names))
    name_index = {nm: i for i, nm in enumerate(names)}
    item_name_id = np.array([name_index[nm] for nm in item_names], dtype=np.int64)
    extra: dict[int, int] = {}  # itemids missing from d_labitems -> name id
    flags: list[str] = []
    flag_index: dict[str, int] = {}
    acc = FirstRows(keys=["hadm", "name"], order=["time", "leid"], min_compact=compact_rows)
    stats = {"lab_rows_read": 0, "lab_rows_without_hadm": 0, "lab_rows_without_value_or_flag": 0,
             "lab_ranges_dropped": 0}
    types = {"labevent_id": pa.int64(), "hadm_id": pa.int64(), "itemid": pa.int64(), "charttime": pa.timestamp("s"),
             "valuenum": pa.float64(), "ref_range_lower": pa.float64(), "ref_range_upper": pa.float64(),
             "flag": pa.string()}
    for batch in stream_csv(_table_uri(root, "labevents"), types, block_size):
        stats["lab_rows_read"] += batch.num_rows
        has_hadm = batch.column("hadm_id").is_valid().to_numpy(zero_copy_only=False)
        value = to_numpy(batch.column("valuenum"), np.nan).astype(np.float64)
        value[~np.isfinite(value)] = np.nan
        flag_col = batch.column("flag")
        has_flag = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(flag_col)), 0), False)
        has_flag = has_flag.to_numpy(zero_copy_only=False)
        informative = ~np.isnan(value) | has_flag
        stats["lab_rows_without_hadm"] += int((~has_hadm).sum())
        stats["lab_rows_without_value_or_flag"] += int((has_hadm & ~informative).sum())
        keep = np.flatnonzero(has_hadm & informative)
        if not len(keep):
            continue
        b = batch.take(pa.array(keep))
        item = to_numpy(b.column("itemid"), -1)
        pos = np.minimum(np.searchsorted(item_ids, item), max(len(item_ids) - 1, 0))
        found = (item_ids[pos] == item) if len(item_ids) else np.zeros(len(item), bool)
        name_id = np.where(found, item_name_id[pos] if len(item_ids) else 0, -1)
        for it in np.unique(item[~found]).tolist():
            extra.setdefault(it, len(names) + len(extra))
        if (~found).any():
            name_id[~found] = [extra[it] for it in item[~found].tolist()]
        fl = pc.utf8_trim_whitespace(b.column("flag"))
        fl = pc.if_else(pc.equal(fl, ""), pa.scalar(None, pa.string()), fl)
        flag_code = global_codes(fl, flag_index, flags)
        v = value[keep]
        no_value = np.isnan(v)
        lo = to_numpy(b.column("ref_range_lower"), np.nan).astype(np.float64)
        hi = to_numpy(b.column("ref_range_upper"), np.nan).astype(np.float64)
        with np.errstate(invalid="ignore"):
            no_range = no_value | (lo > hi)  # a range without a value, or an inverted one, is dropped
        stats["lab_ranges_dropped"] += int((no_range & (~np.isnan(lo) | ~np.isnan(hi))).sum())
        acc.add({
            "hadm": to_numpy(b.column("hadm_id"), -1).astype(np.int64),
            "name": name_id.astype(np.int64),
            "time": to_numpy(b.column("charttime").cast(pa.int64()), _NO_TIME).astype(np.int64),
            "leid": to_numpy(b.column("labevent_id"), _NO_TIME).astype(np.int64),
            "value": v,
            "lo": np.where(no_range, np.nan, lo),
            "hi": np.where(no_range, np.nan, hi),
            "flag": flag_code,
        })
    res = acc.result()
    all_names = names + [str(it) for it in sorted(extra, key=extra.get)]
    rank = np.argsort(np.argsort(np.array(all_names, dtype=object)))  # name id -> alphabetical rank
    if res is None:
        res = {c: np.zeros(0, np.int64) for c in ("hadm", "name", "flag")}
        res.update({c: np.zeros(0) for c in ("value", "lo", "hi")})
    order = np.lexsort((rank[res["name"]] if len(res["name"]) else res["name"], res["hadm"]))
    res = {c: v[order] for c, v in res.items()}
    inside = np.isin(res["hadm"], hadm)
    stats["lab_entries_unknown_admission"] = int((~inside).sum())
    res = {c: v[inside] for c, v in res.items()}
    offsets = np.searchsorted(res["hadm"], hadm, side="left")
    offsets = np.append(offsets, len(res["hadm"])).astype(np.int32)
    name_arr = pa.array(all_names, pa.string()).take(pa.array(res["name"], pa.int64()))
    flag_arr = pa.array(flags + [None], pa.string()).take(pa.array(np.where(res["flag"] < 0, len(flags), res["flag"])))

    def floats(x: np.ndarray) -> pa.Array:
        return pa.array(x, pa.float64(), mask=np.isnan(x))

    values = pa.StructArray.from_arrays([name_arr, floats(res["value"]), floats(res["lo"]), floats(res["hi"]),
                                         flag_arr],
                                        fields=list(LAB_TYPE))
    stats["lab_entries"] = len(values)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values), stats


# ----------------------------------------------------------------------------- drugs
def _drugs(root: str, hadm: np.ndarray, block_size: int, drug_types: Sequence[str] | None,
           compact_rows: int) -> tuple[pa.ListArray, dict]:
    """The ``drugs`` column for admissions ``hadm`` (sorted), and counts."""
    types = {"hadm_id": pa.int64(), "drug": pa.string(), "starttime": pa.timestamp("s"), "drug_type": pa.string()}
    stats = {"prescription_rows_read": 0, "prescriptions_without_hadm": 0, "prescriptions_without_drug": 0}
    allowed = None if drug_types is None else pa.array(list(drug_types), pa.string())
    names: list[str] = []
    name_index: dict[str, int] = {}
    acc = FirstRows(keys=["hadm", "drug"], order=["start"], min_compact=compact_rows)
    for batch in stream_csv(_table_uri(root, "prescriptions"), types, block_size):
        stats["prescription_rows_read"] += batch.num_rows
        drug = pc.utf8_trim_whitespace(batch.column("drug"))
        has_hadm = batch.column("hadm_id").is_valid().to_numpy(zero_copy_only=False)
        has_drug = to_numpy(pc.greater(pc.utf8_length(drug), 0), False)
        stats["prescriptions_without_hadm"] += int((~has_hadm).sum())
        stats["prescriptions_without_drug"] += int((has_hadm & ~has_drug).sum())
        keep = has_hadm & has_drug
        if allowed is not None:
            keep &= to_numpy(pc.is_in(batch.column("drug_type"), value_set=allowed), False)
        rows = pa.array(np.flatnonzero(keep))
        acc.add({
            "hadm": to_numpy(batch.column("hadm_id").take(rows), -1).astype(np.int64),
            "drug": global_codes(drug.take(rows), name_index, names),
            "start": to_numpy(batch.column("starttime").take(rows).cast(pa.int64()), _NO_TIME).astype(np.int64),
        })
    res = acc.result() or {c: np.zeros(0, np.int64) for c in ("hadm", "drug", "start")}
    rank = np.argsort(np.argsort(np.array(names, dtype=object))) if names else np.zeros(0, np.int64)
    order = np.lexsort((rank[res["drug"]], res["start"], res["hadm"]))  # first given first, ties by name
    res = {c: v[order] for c, v in res.items()}
    inside = np.isin(res["hadm"], hadm)
    stats["prescription_drugs_unknown_admission"] = int((~inside).sum())
    res = {c: v[inside] for c, v in res.items()}
    offsets = np.append(np.searchsorted(res["hadm"], hadm, side="left"), len(res["hadm"])).astype(np.int32)
    stats["drug_entries"] = len(res["drug"])
    stats["distinct_drugs"] = len(np.unique(res["drug"]))
    values = pa.array(names, pa.string()).take(pa.array(res["drug"], pa.int64()))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values), stats


# ----------------------------------------------------------------------------- records
def mimic_iv_records(root: str, *, block_size: int = BLOCK, drug_types: Sequence[str] | None = None,
                     surgery_from_procedures: bool = False,
                     compact_rows: int = 4_000_000) -> tuple[pa.Table, dict]:
    """Build the EMR records of a MIMIC-IV root (demo or full) without writing them.

    Args:
        root: Folder (local or ``s3://``) holding ``hosp/*.csv.gz``.
        block_size: Bytes of CSV per streamed block.
        drug_types: Keep only these ``prescriptions.drug_type`` values (``MAIN``,
            ``BASE``, ``ADDITIVE``); default all.
        surgery_from_procedures: Also mark admissions with any ``procedures_icd`` row.
        compact_rows: Reduced rows held per stream before they are merged (memory/speed
            trade-off; the result does not depend on it).

    Returns:
        ``(records, summary)``: one row per admission with :data:`EMR_SCHEMA`, sorted by
        ``hadm_id``; counts of what was read, kept and dropped.

    Raises:
        FileNotFoundError: naming the missing table.
    """
    t0 = time.perf_counter()
    adm = read_csv(_table_uri(root, "admissions"), {"subject_id": pa.int64(), "hadm_id": pa.int64(),
                                                  "admittime": pa.timestamp("s"), "insurance": pa.string()})
    pat = read_csv(_table_uri(root, "patients"), {"subject_id": pa.int64(), "gender": pa.string(),
                                                "anchor_age": pa.float64(), "anchor_year": pa.int64()})
    n_adm = adm.num_rows
    adm = adm.filter(pc.is_valid(adm["hadm_id"])).sort_by("hadm_id")
    hadm_all = to_numpy(adm["hadm_id"], -1).astype(np.int64)
    dup = np.zeros(len(hadm_all), bool)
    dup[1:] = hadm_all[1:] == hadm_all[:-1]
    if dup.any():
        log.warning("admissions: %d repeated hadm_id rows dropped (first kept), e.g. hadm_id %s",
                    int(dup.sum()), hadm_all[dup][:5].tolist())
    adm = adm.filter(pa.array(~dup))
    pidx = pc.index_in(adm["subject_id"], value_set=pat["subject_id"].combine_chunks())
    gender = pc.take(pat["gender"].combine_chunks(), pidx)
    anchor_age = pc.take(pat["anchor_age"].combine_chunks(), pidx)
    anchor_year = pc.take(pat["anchor_year"].combine_chunks(), pidx)
    age = pc.add(anchor_age, pc.subtract(pc.year(adm["admittime"]), anchor_year).cast(pa.float64()))
    ok = pc.and_(pc.and_(pc.is_valid(gender), pc.is_valid(age)), pc.is_valid(adm["subject_id"]))
    ok_np = to_numpy(ok, False)
    if not ok_np.all():
        log.warning("admissions without patient demographics or admittime dropped: hadm_id %s",
                    to_numpy(adm["hadm_id"], -1)[~ok_np][:20].tolist())
    adm, gender, age = adm.filter(ok), gender.filter(ok), age.filter(ok)
    hadm = to_numpy(adm["hadm_id"], -1).astype(np.int64)

    svc = read_csv(_table_uri(root, "services"), {"hadm_id": pa.int64(), "curr_service": pa.string()})
    surg = svc.filter(pc.fill_null(pc.is_in(pc.utf8_trim_whitespace(svc["curr_service"]),
                                            value_set=pa.array(sorted(SURGICAL_SERVICES))), False))
    surgical = set(to_numpy(surg["hadm_id"], -1).tolist())
    if surgery_from_procedures:
        proc = read_csv(_table_uri(root, "procedures_icd"), {"hadm_id": pa.int64()})
        surgical |= set(to_numpy(proc["hadm_id"], -1).tolist())
    surgery = np.isin(hadm, np.array(sorted(surgical), dtype=np.int64))

    labs, lab_stats = _labs(root, hadm, block_size, compact_rows)
    drugs, drug_stats = _drugs(root, hadm, block_size, drug_types, compact_rows)
    n = len(hadm)
    records = pa.Table.from_arrays([
        pc.cast(adm["hadm_id"], pa.string()).combine_chunks(),
        pc.cast(adm["subject_id"], pa.string()).combine_chunks(),
        gender.combine_chunks().cast(pa.string()),
        age.combine_chunks().cast(pa.float64()),
        adm["insurance"].combine_chunks(),
        pa.array(surgery, pa.bool_()),
        labs,
        pa.nulls(n, pa.string()),
        drugs,
        adm["admittime"].combine_chunks().cast(pa.timestamp("us")),
    ], schema=EMR_SCHEMA)
    n_drugs = np.diff(drugs.offsets.to_numpy())
    summary = {
        "admissions": n_adm,
        "records": n,
        "admissions_dropped": n_adm - n,
        "records_with_drugs": int((n_drugs > 0).sum()),
        "records_without_drugs": int((n_drugs == 0).sum()),
        "records_with_labs": int((np.diff(labs.offsets.to_numpy()) > 0).sum()),
        "records_with_surgery": int(surgery.sum()),
        **lab_stats, **drug_stats,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return records, summary


def _write_parts(table: pa.Table, out: str, rows_per_file: int) -> list[str]:
    fs, path = io.filesystem(out)
    io.makedirs(out)
    pattern = re.compile(r"^part-\d{5}\.parquet$")
    stale = [f.path for f in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
             if f.type == pafs.FileType.File and pattern.match(f.base_name)]
    for p in stale:  # only files this importer names; a re-run must not leave old parts behind
        fs.delete_file(p)
    files = []
    for i, start in enumerate(range(0, max(table.num_rows, 1), rows_per_file)):
        uri = io.join(out, f"part-{i:05d}.parquet")
        io.write_table(table.slice(start, rows_per_file), uri)
        files.append(uri)
    return files


def import_mimic_iv(root: str, out: str, *, rows_per_file: int = 100_000, **kwargs) -> dict:
    """Convert a MIMIC-IV root to the EMR contract and write Parquet.

    Args:
        root: MIMIC-IV folder holding ``hosp/`` (demo or full; local or ``s3://``).
        out: A ``.parquet`` file, or a directory that receives ``part-NNNNN.parquet``
            files of ``rows_per_file`` records (earlier ``part-*`` files there are replaced).
        rows_per_file: Records per file when ``out`` is a directory.
        **kwargs: Passed to :func:`mimic_iv_records`.

    Returns:
        The summary of :func:`mimic_iv_records` plus the written ``files``.
    """
    records, summary = mimic_iv_records(root, **kwargs)
    if str(out).endswith(".parquet"):
        io.write_table(records, out)
        files = [out]
    else:
        files = _write_parts(records, out, rows_per_file)
    log.info("wrote %d MIMIC-IV records to %s", records.num_rows, out)
    return {**summary, "files": files}
