"""Markdown tables and sweep figures of the experiments, mean ± standard deviation over seeds."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dpr_dist.data import io
from dpr_dist.eval import plots
from dpr_dist.eval.experiment_options import ExperimentOptions, tag
from dpr_dist.eval.experiment_runs import Runs
from dpr_dist.eval.pipeline import write_bytes

SWEEP_MODELS = ("wg", "ag")
LABELS = {"ncf": "NCF", "nn": "NN", "package2vec": "Package2vec", "lda": "LDA", "br": "BR", "dam": "DAM",
          "gnn": "GNN", "wg": "DPR-WG", "ag": "DPR-AG", "wg_context": "DPR-WG-Context", "wg_type": "DPR-WG-Type",
          "ag_mask": "DPR-AG-Mask", "ag_type": "DPR-AG-Type"}
METRICS = ("precision", "recall", "f1", "jaccard", "antagonism_rate", "f1_of_ceiling")
HEADERS = ("Precision", "Recall", "F1", "Jaccard", "Antagonism rate", "F1 / ceiling")


def aggregate(rows: Sequence[dict], keys: Sequence[str] = METRICS) -> dict[str, tuple[float, float, int]]:
    """``{key: (mean, standard deviation, n)}`` over runs (sample deviation; 0 for one run; None values skipped)."""
    out = {}
    for k in keys:
        v = np.array([r[k] for r in rows if r.get(k) is not None], dtype=float)
        out[k] = (float(v.mean()) if v.size else float("nan"), float(v.std(ddof=1)) if v.size > 1 else 0.0,
                  int(v.size))
    return out


def cell(stat: tuple[float, float, int], digits: int = 4) -> str:
    """``0.5137 ± 0.0021`` (``0.5137`` for one run, ``-`` without any)."""
    mean, std, n = stat
    if n == 0 or np.isnan(mean):
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def seeds_note(opts: ExperimentOptions, runs: Runs) -> str:
    seeds = ", ".join(str(s) for s in opts.seeds)
    spread = "mean ± standard deviation over" if len(opts.seeds) > 1 else "one run,"
    return f"Test split, {runs.test.num_rows} records; {spread} seed{'s' if len(opts.seeds) > 1 else ''} {seeds}."


def _metric_rows(runs: Runs, opts: ExperimentOptions, items: Sequence[tuple[str, str, dict]]
                 ) -> tuple[list[list[str]], dict[str, dict], list[list[str]]]:
    """Table rows ``[label, *metrics]`` and the aggregates of ``(label, model, settings)``
    items, and with ``opts.mbr`` the rows of the candidate-picking items' expected-F1 picks."""
    rows, stats, mbr_rows = [], {}, []
    for label, model, settings in items:
        results = [runs.run(model, seed, **settings) for seed in opts.seeds]
        s = aggregate(results)
        stats[label] = s
        rows.append([label, *(cell(s[k]) for k in METRICS)])
        if opts.mbr is not None and all(r.get("mbr") for r in results):
            m = aggregate([r["mbr"] for r in results])
            mbr_rows.append([label, cell(s["f1"]), *(cell(m[k]) for k in METRICS)])
    return rows, stats, mbr_rows


def _mbr_section(opts: ExperimentOptions, mbr_rows: list[list[str]]) -> list[str]:
    """The expected-F1 picks of a table's candidate-picking models (empty without ``opts.mbr``)."""
    if opts.mbr is None:
        return []
    t = "∞" if np.isinf(opts.mbr) else tag(opts.mbr)
    text = (f"Picking by expected F1 (T = {t}): the same runs and candidate sets; each patient gets the candidate "
            "of highest expected F1 against the others under softmax(scores / T) instead of the best-scoring one "
            "(docs/training.md). The first F1 column repeats the best-scoring pick's. "
            + ("At T = ∞ every model picks the candidate set's medoid." if np.isinf(opts.mbr) else
               "NN scores every candidate the same, so its row is the candidate set's medoid."
               if any(r[0] == LABELS["nn"] for r in mbr_rows) else ""))
    return [text, markdown_table(["Model", "F1 (best score)", *HEADERS], mbr_rows)]


def _footer(runs: Runs, opts: ExperimentOptions) -> str:
    """The true packages' antagonism rate and the candidate sets' ceiling (one value per seed)."""
    def per_seed(key: str) -> tuple[float, float, int]:
        first = {}
        for r in runs.rows.values():
            if r["seed"] in opts.seeds and r.get(key) is not None:
                first.setdefault(r["seed"], r)
        return aggregate(list(first.values()), [key])[key]

    true_rate, ceiling = per_seed("true_antagonism_rate"), per_seed("ceiling_f1")
    return (f"True packages' antagonism rate: {cell(true_rate)}. Oracle ceiling of the candidate sets "
            f"(best F1 any pick could reach): {cell(ceiling)}; F1 / ceiling is a picking model's F1 as a "
            "fraction of it (NCF ranks drugs and has none).")


def table(runs: Runs, opts: ExperimentOptions, title: str, items: Sequence[tuple[str, str, dict]]) -> str:
    """A section with one metrics table over ``(label, model, settings)`` items."""
    rows, _, mbr_rows = _metric_rows(runs, opts, items)
    return "\n\n".join([f"## {title}", seeds_note(opts, runs), markdown_table(["Model", *HEADERS], rows),
                        *_mbr_section(opts, mbr_rows), _footer(runs, opts)]) + "\n"


def sweep_items(key: str, values: Sequence) -> list[tuple[str, str, dict]]:
    """``(label, model, settings)`` of DPR-WG and DPR-AG at each of ``values`` of setting ``key``
    (Table 6, Figures 6 and 7), labelled ``DPR-WG-0.05``."""
    return [(f"{LABELS[m]}-{tag(v)}", m, {key: v}) for m in SWEEP_MODELS for v in values]


def figure_sweep(runs: Runs, opts: ExperimentOptions, report: str, name: str, key: str, values: Sequence,
                 title: str, xlabel: str) -> str:
    """Figures 6 and 7: DPR-WG and DPR-AG over ``values`` of setting ``key``: table + PNG."""
    items = sweep_items(key, values)
    rows, stats, mbr_rows = _metric_rows(runs, opts, items)
    shown = {"Precision": "precision", "Recall": "recall", "F1": "f1"}

    def series(labels: Sequence[str], metric: str) -> tuple[list[float], list[float]]:
        return [stats[x][metric][0] for x in labels], [stats[x][metric][1] for x in labels]

    if name == "fig6":  # grouped bars, as in the paper
        png = plots.grouped_bars([f"{m.upper()}-{tag(v)}" for m in SWEEP_MODELS for v in values],
                                 {h: series([i[0] for i in items], k) for h, k in shown.items()},
                                 ylabel="test metric", title=title)
    else:  # one panel per model, metrics against the setting
        panels = {LABELS[m]: {h: series([f"{LABELS[m]}-{tag(v)}" for v in values], k) for h, k in shown.items()}
                  for m in SWEEP_MODELS}
        png = plots.line_panels(list(values), panels, xlabel=xlabel, ylabel="test metric", title=title)
    write_bytes(png, io.join(report, f"{name}.png"))
    return "\n\n".join([f"## {title}", seeds_note(opts, runs), f"![{name}]({name}.png)",
                        markdown_table(["Model-setting", *HEADERS], rows), *_mbr_section(opts, mbr_rows)]) + "\n"
