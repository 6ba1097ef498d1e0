"""The experiments of paper sections 5 and 6 as one command (``dpr experiment``).

:func:`run_experiments` runs any subset of

==============  ==========================================================================
``table4``      all models (NCF, NN, Package2vec, LDA, BR, DAM, GNN, DPR-WG, DPR-AG)
``table5``      the ablations (DPR-WG-Context, DPR-WG-Type, DPR-AG-Mask, DPR-AG-Type)
``table6``      DPR-WG and DPR-AG with 1 and 2 GNN layers
``fig6``        DPR-WG and DPR-AG at co-occurrence thresholds 0.01 / 0.05 / 0.1 (the
                threshold filters the stored edges of the prepared data: no rebuild)
``fig7``        DPR-WG and DPR-AG with 1 / 5 / 10 / 20 negative samples
``fig8``        t-SNE of the mask vectors of up to 1,000 test patients by patient group
``case``        Tables 7 and 8 for one patient (contextual impact factors of DPR-WG,
                interaction-type probabilities of DPR-AG)
``generation``  package generation (section 6): picking from ``S1`` against ``S1 ∪ S2 ∪ S3``
==============  ==========================================================================

and writes Markdown tables and PNG plots into ``DIR/report`` (``report.md`` joins the
sections; ``results.json`` holds the test metrics of every run evaluated there, by this
call or an earlier one). Tables and figures give the
mean and standard deviation over the seeds; ``fig8`` and ``case`` use the first seed.

Every (model, setting, seed) is one :func:`dpr_dist.train.run.train` call with its own
``train.name`` under ``DIR/runs``: ``train.name`` itself for the configuration's own
``train.seed`` and ``{name}-s{seed}`` for the other seeds, plus the setting when it differs
from the configuration (e.g. ``-t0.05``, ``-neg5``, ``-l2``). The runs of a seed share its
NCF pre-training (``{name}[-s{seed}]-ncf``), a run that several experiments need (e.g.
DPR-WG at the defaults) is trained once, and finished model directories are reused: run
in the output directory of ``dpr pipeline`` (same config and inputs), the experiments
start from the pipeline's models. The runs the chosen experiments need
(:func:`planned_runs`) train before any section is written, ``train.parallel_runs`` at
once (:mod:`dpr_dist.train.parallel`): each seed's pre-training first, then the rest, each
evaluated as soon as it has finished.

Rows of an earlier report's ``results.json`` can stand for runs that are not here
(``ExperimentOptions.reuse_results``, ``--reuse-results FILE``): each row carries the
fingerprints of its data and configuration, and a run with no model directory takes a
matching row instead of training (:mod:`~dpr_dist.eval.experiment_store`). Seeds trained by
different jobs become one table that way.

With ``ExperimentOptions.mbr`` (``--mbr [T]``), the tables and ``generation`` add each
candidate-picking model's pick of highest expected F1 (:mod:`dpr_dist.eval.mbr`) beside the
paper's best-scoring pick; it needs no training, so adding it to finished runs only evaluates.

The parts live in their own modules: options and their command line
(:mod:`~dpr_dist.eval.experiment_options`), the runs (:mod:`~dpr_dist.eval.experiment_runs`),
tables and sweep figures (:mod:`~dpr_dist.eval.experiment_report`), and the analyses behind
``fig8`` (:mod:`~dpr_dist.eval.patient_groups`), ``case``
(:mod:`~dpr_dist.eval.case_study`) and ``generation``
(:mod:`~dpr_dist.eval.generation_eval`), which work on model directories and prepared
records, so they apply to real data as well as synthetic.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Callable, Sequence

from dpr_dist.config import Config
from dpr_dist.data import io
from dpr_dist.eval import plots
from dpr_dist.eval.case_study import case_study_markdown, find_record
from dpr_dist.eval.experiment_options import EXPERIMENTS, ExperimentOptions, parse_list
from dpr_dist.eval.experiment_report import (LABELS, aggregate, cell, figure_sweep, markdown_table, seeds_note,
                                             sweep_items, table)
from dpr_dist.eval.experiment_runs import Runs
from dpr_dist.eval.generation_eval import generation_metrics
from dpr_dist.eval.patient_groups import mask_tsne
from dpr_dist.eval.pipeline import output_config, prepare_inputs, write_bytes, write_text
from dpr_dist.train.job import ensure_data
from dpr_dist.train.prepared import load_prepared

log = logging.getLogger(__name__)

TABLE4_MODELS = ("ncf", "nn", "package2vec", "lda", "br", "dam", "gnn", "wg", "ag")
TABLE5_MODELS = ("wg_context", "wg_type", "ag_mask", "ag_type", "wg", "ag")


#: The setting each sweep varies, and the option that holds its values.
SWEEPS = {"table6": ("model.gnn_layers", "layers"), "fig6": ("data.threshold", "thresholds"),
          "fig7": ("train.negative_ratio", "negatives")}


def section_runs(name: str, opts: ExperimentOptions) -> tuple[list[tuple[str, str, dict[str, Any]]], tuple[int, ...]]:
    """The runs experiment ``name`` evaluates: its ``(label, model, settings)`` items, and the
    seeds (``fig8`` and ``case`` look at the first seed only). The sections below ask
    :class:`Runs` for exactly these, and :func:`planned_runs` trains them up front."""
    if name in SWEEPS:
        key, option = SWEEPS[name]
        return sweep_items(key, getattr(opts, option)), opts.seeds
    models = {"table4": TABLE4_MODELS, "table5": TABLE5_MODELS, "fig8": (opts.mask_model,), "case": ("wg", "ag"),
              "generation": (opts.generation_model,)}[name]
    return [(LABELS[m], m, {}) for m in models], opts.seeds[:1] if name in ("fig8", "case") else opts.seeds


def _table4(runs: Runs, opts: ExperimentOptions, report: str) -> str:
    return table(runs, opts, "Table 4: the performance of each model", section_runs("table4", opts)[0])


def _table5(runs: Runs, opts: ExperimentOptions, report: str) -> str:
    return table(runs, opts, "Table 5: ablation study", section_runs("table5", opts)[0])


def _table6(runs: Runs, opts: ExperimentOptions, report: str) -> str:
    return table(runs, opts, "Table 6: number of GNN layers", section_runs("table6", opts)[0])


def _fig6(runs: Runs, opts: ExperimentOptions, report: str) -> str:
    key, option = SWEEPS["fig6"]
    return figure_sweep(runs, opts, report, "fig6", key, getattr(opts, option),
                        "Figure 6: co-occurrence proportion threshold", "threshold")


def _fig7(runs: Runs, opts: ExperimentOptions, report: str) -> str:
    key, option = SWEEPS["fig7"]
    return figure_sweep(runs, opts, report, "fig7", key, getattr(opts, option),
                        "Figure 7: number of negative samples", "negative samples per positive")


def _fig8(runs: Runs, opts: ExperimentOptions, report: str) -> str:
    seed = opts.seeds[0]
    res = mask_tsne(runs.bundle(opts.mask_model, seed), runs.test, opts.groups, opts.tsne_patients, seed)
    title = f"Figure 8: t-SNE of the {LABELS[opts.mask_model]} mask vectors of {len(res.labels)} test patients"
    write_bytes(plots.group_scatter(res.xy, res.labels, [g.name for g in res.groups], title=title),
                io.join(report, "fig8.png"))
    rows = [[g, str(n), f"{d:.3f}" if n else "-"] for g, n, d in res.summary]
    text = ("Deviation: the group's mean distance (in mask space) to the centroid of the patients in no group, "
            "divided by that of the patients in no group themselves; above 1 the group's masks lie apart. "
            f"Seed {seed}; groups from disease-document tokens: " + "; ".join(f"`{s}`" for s in opts.groups) + ".")
    return "\n\n".join([f"## {title}", "![fig8](fig8.png)", markdown_table(["Group", "Patients", "Deviation"], rows),
                        text]) + "\n"


def _case(runs: Runs, opts: ExperimentOptions, report: str) -> str:
    seed = opts.seeds[0]
    wg, ag = runs.bundle("wg", seed), runs.bundle("ag", seed)
    record = find_record(runs.cfg.data.prepared, opts.patient, wg)
    return case_study_markdown(record, wg, ag, opts.case_rows, seed)


def _generation(runs: Runs, opts: ExperimentOptions, report: str) -> str:
    per_seed = [generation_metrics(runs.bundle(opts.generation_model, s), runs.test, runs.cfg.generation,
                                   mbr_temperature=opts.mbr) for s in opts.seeds]
    keys = ("f1", "jaccard", "precision", "recall", "antagonism_rate", "ceiling_f1")
    heads = ("F1", "Jaccard", "Precision", "Recall", "Antagonism rate", "Oracle ceiling")
    rows = []
    choices = [("s1", "S1 (non-heuristic)"), ("s", "S = S1 ∪ S2 ∪ S3 (heuristic)")]
    if opts.mbr is not None:
        choices.append(("s_mbr", "S, picked by expected F1"))
    for choice, label in choices:
        stat = aggregate([r[choice] for r in per_seed], keys)
        rows.append([label, *(cell(stat[k]) for k in keys)])
    extra = aggregate([{**r, "picked_generated": 100 * r["picked_generated"]} for r in per_seed],
                      ("picked_generated", "mean_s1", "mean_s"))
    title = f"Package generation (section 6) with {LABELS[opts.generation_model]}"
    text = (f"The generated package (from S2 or S3) is picked for {cell(extra['picked_generated'], 1)} % of the "
            f"test patients; candidate sets hold {cell(extra['mean_s1'], 1)} packages in S1 and "
            f"{cell(extra['mean_s'], 1)} in S on average. Both picks are scored against the recorded packages (the "
            "paper's Table 9 asked doctors instead). Rule thresholds: the `generation` section of the config."
            + (f" The last row picks from S the package of highest expected F1 under softmax(scores / {opts.mbr:g})."
               if opts.mbr is not None else ""))
    return "\n\n".join([f"## {title}", seeds_note(opts, runs), markdown_table(["Candidates", *heads], rows),
                        text]) + "\n"


def planned_runs(names: Sequence[str], opts: ExperimentOptions) -> list[tuple[str, int, dict[str, Any]]]:
    """Every run the experiments ``names`` evaluate (:func:`section_runs`), ``(model, seed,
    settings)`` in report order, so that they can train up front, ``train.parallel_runs`` at once."""
    return [(m, seed, settings) for name in EXPERIMENTS if name in names
            for items, seeds in [section_runs(name, opts)] for seed in seeds for _, m, settings in items]


SECTIONS: dict[str, Callable[[Runs, ExperimentOptions, str], str]] = {
    "table4": _table4, "table5": _table5, "table6": _table6, "fig6": _fig6, "fig7": _fig7, "fig8": _fig8,
    "case": _case, "generation": _generation}


def run_experiments(cfg: Config, out: str, which: str | Sequence[str] = EXPERIMENTS,
                    options: ExperimentOptions | None = None, *, emr: str | None = None,
                    ddi: str | None = None) -> dict[str, Any]:
    """Run the chosen experiments and write their report under ``out/report``.

    Args:
        cfg: The configuration (defaults of every run).
        out: Output directory (local or ``s3://``): ``out/runs`` (Ray Train runs and model
            directories), ``out/report`` (Markdown, PNG, ``results.json``) and, with
            ``emr`` / ``ddi``, ``out/prepared``.
        which: Some of :data:`EXPERIMENTS` (``"table6,fig6"`` or a sequence).
        options: Seeds, sweeps and analysis choices (:class:`ExperimentOptions`).
        emr, ddi: Inputs in the data contract, prepared into ``out/prepared`` (both or
            neither); without them the prepared data of ``data.prepared`` is used
            (synthetic data is generated and prepared when absent, as in ``run_job``).

    Returns:
        ``{"report": path of report.md, "files": [written files], "sections": {name: markdown},
        "results": [one dict per run], "trained": [runs trained by this call, {name}-{model}],
        "unplanned": [those of them trained outside the up-front plan (none expected)],
        "reused": [runs whose rows came from ``options.reuse_results``]}``.

    Raises:
        ValueError: on an unknown experiment or a bad option, before any training.
    """
    names = parse_list(which, str, EXPERIMENTS)
    opts = options or ExperimentOptions()
    if (emr is None) != (ddi is None):
        raise ValueError("give both emr and ddi, or neither")
    if emr is not None:
        cfg = output_config(cfg, out, emr, ddi)
        prepare_inputs(cfg)
    else:
        cfg = replace(cfg, train=replace(cfg.train, storage_path=io.join(out, "runs")))
        ensure_data(cfg)
    opts.check(float(load_prepared(cfg.data.prepared).manifest.get("build_threshold", 0.0)))
    report = io.join(out, "report")
    runs = Runs(cfg, report, opts.mbr, opts.reuse_results)
    runs.train_planned(planned_runs(names, opts))
    sections: dict[str, str] = {}
    files = []
    for name in (n for n in EXPERIMENTS if n in names):
        log.info("experiment %s", name)
        sections[name] = SECTIONS[name](runs, opts, report)
        write_text(sections[name], io.join(report, f"{name}.md"))
        files.append(io.join(report, f"{name}.md"))
        if name in ("fig6", "fig7", "fig8"):
            files.append(io.join(report, f"{name}.png"))
    reused = (f" {len(runs.reused)} of the runs were not trained here: their rows are reused from "
              f"{', '.join(f'`{p}`' for p in opts.reuse_results)} (`reused_from` in `results.json`)."
              if runs.reused else "")
    head = (f"# Experiments\n\nData: `{cfg.data.prepared}` ({runs.test.num_rows} test records). Runs: "
            f"`{cfg.train.storage_path}`. Seeds: {', '.join(map(str, opts.seeds))}.{reused}\n")
    path = io.join(report, "report.md")
    write_text("\n".join([head, *sections.values()]), path)
    log.info("report -> %s", path)
    return {"report": path, "files": [path, *files, io.join(report, "results.json")], "sections": sections,
            "results": list(runs.rows.values()), "trained": runs.trained, "unplanned": runs.unplanned,
            "reused": runs.reused}
