"""Public API of the synthetic generator: :func:`generate`, :func:`generate_with_truth` and
:func:`write`."""

from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa

from dpr_dist.data.schema import DDI_SCHEMA, EMR_SCHEMA
from dpr_dist.data.synth.columns import _ddi_table, _labs, _notes, _variants
from dpr_dist.data.synth.knobs import SynthKnobs, SynthTruth
from dpr_dist.data.synth.packages import _antagonism_avoidance, _packages
from dpr_dist.data.synth.plan import _make_plan
from dpr_dist.data.synth.records import _records
from dpr_dist.data.synth.vocab import _VARIANT_P, GENDERS, INSURANCE, LABELS

#: The package's logger (same name as before the split into modules).
log = logging.getLogger("dpr_dist.data.synth")


def generate_with_truth(records: int, drugs: int, seed: int = 0, conditions: int = 12, notes: bool = True,
                        mean_package: float = 18.0, *,
                        knobs: SynthKnobs | None = None) -> tuple[pa.Table, pa.Table, SynthTruth]:
    """Like :func:`generate`, plus what was planted (:class:`SynthTruth`)."""
    for name, val, least in (("records", records, 1), ("drugs", drugs, 8), ("conditions", conditions, 1)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < least:
            raise ValueError(f"synth: {name} must be an integer >= {least}, got {val!r}")
    if not np.isfinite(mean_package) or mean_package < 2:
        raise ValueError(f"synth: mean_package must be a number >= 2, got {mean_package!r}")
    knobs = knobs or SynthKnobs()
    for name in ("antagonism_tolerance", "bundle_clash", "second_core_prob"):
        val = getattr(knobs, name)
        if not 0.0 <= val <= 1.0:
            raise ValueError(f"synth: {name} must be in [0, 1], got {val!r}")
    mean_eff = float(min(mean_package, max(2.0, 0.4 * drugs)))
    if mean_eff < mean_package:
        log.info("mean_package %.1f lowered to %.1f for %d drugs", mean_package, mean_eff, drugs)
    t0 = time.perf_counter()
    r_plan, r_rec, r_pkg, r_lab, r_note, r_var, r_ddi = (
        np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(7))
    plan = _make_plan(int(drugs), int(conditions), mean_eff, knobs, r_plan)
    rec = _records(int(records), plan, knobs, r_rec)
    offsets, dids, hard = _packages(rec, plan, knobs, mean_eff, r_pkg)
    spell = r_var.choice(len(_VARIANT_P), size=len(dids), p=_VARIANT_P)
    drug_col = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)),
                                        _variants(plan.names, plan.aligned, r_var).take(pa.array(dids * 6 + spell)))
    n = int(records)
    width = max(6, len(str(n)))
    ins = pa.array(INSURANCE).take(pa.array(rec["insurance"], pa.int64(), mask=rec["insurance_null"]))
    emr = pa.Table.from_arrays([
        pa.array([f"R{i:0{width}d}" for i in range(n)], pa.string()),
        pa.array([f"P{p:0{width}d}" for p in rec["patient"].tolist()], pa.string()),
        pa.array(GENDERS).take(pa.array(rec["gender"])),
        pa.array(rec["age"], pa.float64()),
        ins,
        pa.array(rec["surgery"], pa.bool_()),
        _labs(rec, plan, knobs, r_lab),
        _notes(rec, plan, knobs, r_note) if notes else pa.nulls(n, pa.string()),
        drug_col,
        pa.array(rec["admit"], pa.timestamp("us")),
    ], schema=EMR_SCHEMA)
    ddi = _ddi_table(plan, knobs, r_ddi)
    cn = [c.name for c in plan.conds]
    truth = SynthTruth(
        drug_names=tuple(plan.names), aligned=plan.aligned, conditions=tuple(cn),
        record_conditions=rec["conds"].astype(np.int16), package_offsets=offsets, package_drugs=dids, hard=hard,
        regimens={cn[c]: tuple(plan.names[d] for d in plan.bundles[plan.first[c]] if d >= 0) for c in range(len(cn))},
        contraindications={cn[c]: tuple(plan.names[d] for d in row[row >= 0]) for c, row in enumerate(plan.contra)
                           if (row >= 0).any()},
        rules=tuple((cn[c], plan.names[a], plan.names[b]) for c, a, b in plan.rules.tolist()),
        severity=rec["severity"],
        bundles=tuple(tuple(plan.names[d] for d in row if d >= 0) for row in plan.bundles.tolist()),
        condition_bundles={cn[c]: tuple(int(b) for b in row if b >= 0) for c, row in enumerate(plan.cond_bundles)},
        surgery_bundles=tuple(int(b) for b in np.flatnonzero(plan.surgical)),
        antagonism_avoidance=_antagonism_avoidance(rec, plan, knobs), antagonism=plan.ant.astype(np.int64),
        clashes=tuple((cn[c1], cn[c2], plan.names[a], plan.names[b]) for c1, c2, a, b in plan.clashes.tolist()),
    )
    log.info("%d records, %d drugs, %d interaction rows in %.1fs", n, drugs, ddi.num_rows,
             time.perf_counter() - t0)
    return emr, ddi, truth


def generate(records: int, drugs: int, seed: int = 0, conditions: int = 12, notes: bool = True,
             mean_package: float = 18.0, *, knobs: SynthKnobs | None = None) -> tuple[pa.Table, pa.Table]:
    """Return ``(emr, ddi)`` Arrow tables in the data contract.

    Args:
        records: Number of EMR rows (hospital stays); about 1.3 per patient.
        drugs: Drug catalog size; ~40% of them are in the interaction table.
        seed: Seed of everything random (same arguments, identical tables).
        conditions: Number of latent patient conditions (16 named ones, then generic).
        notes: Write admission notes (null when False).
        mean_package: Target mean package size (lowered to ``0.4 * drugs`` when larger).
        knobs: Probabilities of the generative process (:class:`SynthKnobs`).

    Returns:
        ``emr`` ``[records]`` rows in :data:`EMR_SCHEMA` and ``ddi`` rows (one per ordered
        drug pair) in :data:`DDI_SCHEMA`.

    Raises:
        ValueError: on a non-integer or too small count, or ``mean_package < 2``.
    """
    emr, ddi, _ = generate_with_truth(records, drugs, seed, conditions, notes, mean_package, knobs=knobs)
    return emr, ddi


def write(emr: pa.Table, ddi: pa.Table, out: str, rows_per_file: int = 50_000) -> dict:
    """Write ``out/emr/part-00000.parquet ...`` and ``out/ddi.parquet`` (local dir or ``s3://``).

    Files already under ``out/emr/`` are removed first, so a directory reader sees only
    this data set. S3 endpoint and credentials come from the usual ``AWS_*`` variables.

    Returns:
        Summary counts: records, patients, files, interaction rows per label, mean package size.

    Raises:
        ValueError: when a table is not in the contract or ``rows_per_file < 1``.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from dpr_dist.data import io

    if rows_per_file < 1:
        raise ValueError(f"synth.write: rows_per_file must be >= 1, got {rows_per_file}")
    for table, schema, what in ((emr, EMR_SCHEMA, "emr"), (ddi, DDI_SCHEMA, "ddi")):
        have = [(f.name, f.type) for f in table.schema]
        if have != [(f.name, f.type) for f in schema]:
            raise ValueError(f"synth.write: the {what} table is not in the contract: columns {table.schema.names}")
    fs, root = io.filesystem(out)
    emr_dir = f"{root.rstrip('/')}/emr"
    fs.create_dir(emr_dir, recursive=True)
    fs.delete_dir_contents(emr_dir, missing_dir_ok=True)
    files = max(1, -(-emr.num_rows // rows_per_file))
    for i in range(files):
        pq.write_table(emr.slice(i * rows_per_file, rows_per_file), f"{emr_dir}/part-{i:05d}.parquet", filesystem=fs)
    pq.write_table(ddi, f"{root.rstrip('/')}/ddi.parquet", filesystem=fs)
    counts = {x["values"]: x["counts"] for x in pc.value_counts(ddi["label"].combine_chunks()).to_pylist()}
    sizes = pc.list_value_length(emr["drugs"].combine_chunks())
    return {
        "emr": io.join(out, "emr"), "ddi": io.join(out, "ddi.parquet"), "emr_files": files,
        "records": emr.num_rows, "patients": pc.count_distinct(emr["patient_id"]).as_py(),
        "mean_package": round(pc.mean(sizes).as_py() or 0.0, 2), "ddi_rows": ddi.num_rows,
        "ddi_labels": {**{k: int(counts.get(k, 0)) for k in LABELS}, "null": int(counts.get(None, 0))},
    }
