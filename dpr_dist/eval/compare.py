"""Is one model's F1 really higher than another's? A paired comparison on the same records.

Two models evaluated on the same split (``predictions.parquet`` of ``dpr evaluate`` or
``dpr pipeline``) are compared record by record: each record's precision, recall, F1 and
Jaccard against its true package (from the prepared data), then the mean of the per-record
differences ``A - B``, the share of records where ``A`` is better, worse or level, and a 95 %
confidence interval of the mean difference from a bootstrap **over patients**: a split is
made by patient, and the records of one patient are not independent (they share the
patient's description and, often, their packages), so a patient's records are resampled
together. The two-sided p-value is twice the smaller share of bootstrap means on either side
of zero (at least ``1 / n_boot``).

This is what "clearly beats" means in ``docs/results.md``: a difference whose interval
excludes zero, at every seed. Only record and patient ids reach the logs and errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpr_dist.data import io
from dpr_dist.train.prepared import read_records

METRICS = ("precision", "recall", "f1", "jaccard")
#: Patient indices drawn at once by the bootstrap (int64: 32 MiB), whatever the split's size.
BOOT_BLOCK = 1 << 22


@dataclass(frozen=True)
class Truth:
    """The true packages of one split, by record.

    Attributes:
        record_ids: ``[R]`` record ids, sorted.
        patient_ids: ``[R]`` the patient of each record.
        packages: ``R`` sets of drug names.
    """

    record_ids: list[str]
    patient_ids: list[str]
    packages: list[frozenset[str]]

    @classmethod
    def from_prepared(cls, prepared: str, split: str) -> "Truth":
        """Read a split of ``dpr prepare``'s output (record and patient ids, drug names).

        Raises:
            FileNotFoundError: when the prepared data has no such split.
        """
        t = read_records(prepared, split, ("record_id", "patient_id", "drug_ids"))  # sorted by record id
        names = io.read_table(io.join(prepared, "vocab", "drugs.parquet")).column("name").to_pylist()
        packages = [frozenset(names[i] for i in ids) for ids in t.column("drug_ids").to_pylist()]
        return cls(t.column("record_id").to_pylist(), [str(p) for p in t.column("patient_id").to_pylist()], packages)


def per_record(predictions: pa.Table, model: str, truth: Truth, where: str = "predictions") -> dict[str, np.ndarray]:
    """Per-record precision, recall, F1 and Jaccard of one model's picks, in ``truth``'s record order.

    Empty packages follow :mod:`dpr_dist.eval.metrics`: precision of an empty pick and recall
    of an empty truth are 0; Jaccard of two empty packages is 0.

    Raises:
        ValueError: naming the model and a record id when the picks do not cover exactly the
            split's records (one pick each).
    """
    rows = predictions.filter(pc.equal(predictions.column("model"), model))
    if rows.num_rows == 0:
        have = sorted(set(predictions.column("model").to_pylist()))
        raise ValueError(f"{where}: no picks of model {model!r} (models: {have})")
    picks: dict[str, frozenset[str]] = {}
    for rid, drugs in zip(rows.column("record_id").to_pylist(), rows.column("drugs").to_pylist()):
        if rid in picks:
            raise ValueError(f"{where}: model {model!r} has two picks for record {rid}")
        picks[rid] = frozenset(drugs or ())
    extra = picks.keys() - set(truth.record_ids)
    if extra:
        raise ValueError(f"{where}: model {model!r} has a pick for record {min(extra)}, which is not in the split")
    missing = [r for r in truth.record_ids if r not in picks]
    if missing:
        raise ValueError(f"{where}: model {model!r} has no pick for record {missing[0]} "
                         f"({len(missing)} records of the split have none)")
    out = {k: np.zeros(len(truth.record_ids)) for k in METRICS}
    for i, (rid, want) in enumerate(zip(truth.record_ids, truth.packages)):
        got = picks[rid]
        hit = len(got & want)
        p = hit / len(got) if got else 0.0
        r = hit / len(want) if want else 0.0
        union = len(got | want)
        out["precision"][i], out["recall"][i] = p, r
        out["f1"][i] = 2 * p * r / (p + r) if p + r else 0.0
        out["jaccard"][i] = hit / union if union else 0.0
    return out


def patient_bootstrap(diff: np.ndarray, groups: Sequence, n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95) -> dict[str, float]:
    """Mean of ``diff`` with a bootstrap interval that resamples whole groups (patients).

    Args:
        diff: ``[R]`` per-record differences.
        groups: ``[R]`` the group (patient) of each record.
        n_boot: Bootstrap samples.
        seed: Seed of the resampling.
        level: Coverage of the interval.

    Returns:
        ``mean``, ``low``, ``high`` (percentile interval) and ``p`` (two-sided).
    """
    diff = np.asarray(diff, dtype=np.float64)
    if diff.size == 0:
        raise ValueError("patient_bootstrap: no records")
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    sums, counts = np.bincount(g, weights=diff), np.bincount(g).astype(np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, BOOT_BLOCK // sums.size)  # bootstrap samples per block of drawn patient indices
    for start in range(0, n_boot, step):
        draws = rng.integers(0, sums.size, size=(min(step, n_boot - start), sums.size))
        means[start:start + len(draws)] = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    p = min(1.0, max(2 * min(np.mean(means <= 0), np.mean(means >= 0)), 1.0 / n_boot))
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high), "p": float(p)}


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray], truth: Truth, metric: str = "f1",
            n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """The paired comparison of two models' per-record metrics (:func:`per_record`) on ``metric``.

    Returns:
        ``records``, ``patients``, ``a`` and ``b`` (their means), ``diff`` (``a - b``),
        ``low`` / ``high`` (95 % interval over patients), ``p``, and ``better`` / ``worse`` /
        ``level`` (shares of records).
    """
    if metric not in METRICS:
        raise ValueError(f"compare: metric must be one of {METRICS}, got {metric!r}")
    d = a[metric] - b[metric]
    boot = patient_bootstrap(d, truth.patient_ids, n_boot, seed)
    eps = 1e-12
    return {"records": int(d.size), "patients": len(set(truth.patient_ids)),
            "a": float(a[metric].mean()), "b": float(b[metric].mean()), "diff": boot["mean"],
            "low": boot["low"], "high": boot["high"], "p": boot["p"],
            "better": float(np.mean(d > eps)), "worse": float(np.mean(d < -eps)),
            "level": float(np.mean(np.abs(d) <= eps))}


def parse_side(spec: str) -> tuple[str, str | None]:
    """``FILE`` or ``FILE:MODEL`` (a file holding one model needs no ``:MODEL``)."""
    path, sep, model = spec.rpartition(":")
    if sep and model and "/" not in model:  # not the "//" of s3://
        return path, model
    return spec, None


def load_side(spec: str, truth: Truth) -> tuple[str, dict[str, np.ndarray]]:
    """The label (``MODEL (folder of FILE)``) and per-record metrics of one side (``FILE[:MODEL]``)."""
    path, model = parse_side(spec)
    table = io.read_table(path)
    for col in ("record_id", "model", "drugs"):
        if col not in table.column_names:
            raise ValueError(f"{path}: no {col!r} column (a predictions.parquet of dpr evaluate or dpr pipeline)")
    if model is None:
        models = sorted(set(table.column("model").to_pylist()))
        if len(models) != 1:
            raise ValueError(f"{path} holds the picks of {models}: name one as {path}:MODEL")
        model = models[0]
    folder = path.rstrip("/").rsplit("/", 2)[-2] if path.count("/") else "."
    return f"{model} ({folder})", per_record(table, model, truth, where=path)


def compare_files(prepared: str, split: str, pairs: Sequence[tuple[str, str]], metric: str = "f1",
                  n_boot: int = 2000, seed: int = 0, pool: bool = False) -> list[dict]:
    """:func:`compare` for each ``(FILE[:MODEL], FILE[:MODEL])`` pair of predictions on one split.

    With ``pool``, one more row (``label_a`` ``"all pairs"``) compares the means over the
    pairs: each record's metric averaged over the ``A`` sides and over the ``B`` sides (for
    example three seeds of each model), bootstrapped over patients like the others. Its
    interval is conditional on the runs compared: it says how sure the split is of their
    average, not what another seed would give.
    """
    truth = Truth.from_prepared(prepared, split)
    rows, sides_a, sides_b = [], [], []
    for spec_a, spec_b in pairs:
        label_a, a = load_side(spec_a, truth)
        label_b, b = load_side(spec_b, truth)
        sides_a.append(a)
        sides_b.append(b)
        rows.append({"label_a": label_a, "label_b": label_b, "a_file": spec_a, "b_file": spec_b, "split": split,
                     "metric": metric, **compare(a, b, truth, metric, n_boot, seed)})
    if pool and len(pairs) > 1:
        a = {k: np.mean([x[k] for x in sides_a], axis=0) for k in METRICS}
        b = {k: np.mean([x[k] for x in sides_b], axis=0) for k in METRICS}
        rows.append({"label_a": "all pairs", "label_b": f"mean of {len(pairs)}", "a_file": None, "b_file": None,
                     "split": split, "metric": metric, **compare(a, b, truth, metric, n_boot, seed)})
    return rows


def compare_table(rows: Sequence[dict]) -> str:
    """Markdown table of :func:`compare` results (each with ``label_a`` / ``label_b``)."""
    lines = ["| A | B | records (patients) | A | B | A - B | 95 % interval (patients) | p "
             "| A better / worse / level |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label_a']} | {r['label_b']} | {r['records']} ({r['patients']}) | {r['a']:.4f} "
                     f"| {r['b']:.4f} | {r['diff']:+.4f} | [{r['low']:+.4f}, {r['high']:+.4f}] | {r['p']:.3f} "
                     f"| {r['better']:.1%} / {r['worse']:.1%} / {r['level']:.1%} |")
    return "\n".join(lines)
