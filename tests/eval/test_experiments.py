"""The experiments: options, tables, patient groups, the analyses on toy model directories, and a
tiny end-to-end run (``table6,fig6,fig8,case,generation``, one seed) on Ray Train."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dpr_dist.config import GenerationConfig
from dpr_dist.eval import plots
from dpr_dist.eval.evaluate import evaluate_models
from dpr_dist.eval.case_study import case_study_markdown, find_record
from dpr_dist.eval.interaction_types import type_head_metrics
from dpr_dist.eval.experiment_options import DEFAULT_GROUPS, ExperimentOptions, parse_list
from dpr_dist.eval.experiment_report import aggregate, cell, markdown_table
from dpr_dist.eval.experiments import TABLE4_MODELS, TABLE5_MODELS, planned_runs
from dpr_dist.eval.generation_eval import as_candidates, generation_metrics
from dpr_dist.eval.patient_groups import group_labels, mask_tsne, parse_group
from dpr_dist.eval.generation import GeneratedPackage
from toy_bundles import TOKENS, toy_bundle, toy_records

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- small parts
def test_parse_group_and_labels():
    g = parse_group("pregnant=gender:f,lab:*hcg*:high|lab:*chorionic*:high")
    assert g.name == "pregnant" and g.clauses == (("gender:f",), ("lab:*hcg*:high", "lab:*chorionic*:high"))
    assert parse_group("age:infant").name == "age:infant"
    for bad in ("x=", "=age:infant", "other=age:infant", "a=b,,c"):
        with pytest.raises(ValueError, match="patient group"):
            parse_group(bad)
    docs = [[0, 3], [2, 4], [3, 4], [1], [0, 2, 4]]  # tokens by id in toy_bundles.TOKENS
    records = pa.table({"doc_ids": pa.array(docs, pa.list_(pa.int32()))})
    groups = [parse_group(s) for s in ("infant=age:infant", "pregnant=gender:f,lab:*hcg*:high", "Age:Elderly")]
    labels = group_labels(groups, records, TOKENS)
    # record 4 is an infant and pregnant-like: the first group wins
    assert labels.tolist() == ["infant", "pregnant", "other", "Age:Elderly", "infant"]


def test_default_groups_parse():
    assert [parse_group(s).name for s in DEFAULT_GROUPS] == ["infant", "pregnant", "liver disease"]


def test_aggregate_cells_and_tables():
    rows = [{"f1": 0.5, "recall": None}, {"f1": 0.7, "recall": 0.2}]
    stat = aggregate(rows, ["f1", "recall", "precision"])
    assert stat["f1"][0] == pytest.approx(0.6) and stat["f1"][1] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert cell(stat["f1"]) == "0.6000 ± 0.1414" and cell(stat["recall"]) == "0.2000" and cell(stat["precision"]) == "-"
    md = markdown_table(["Model", "F1"], [["NCF", "0.1"], ["NN", "0.2"]])
    assert md.splitlines() == ["| Model | F1 |", "|---|---|", "| NCF | 0.1 |", "| NN | 0.2 |"]


def test_planned_runs_are_the_sections_runs():
    opts = ExperimentOptions(seeds=(0, 1), thresholds=(0.01, 0.1), negatives=(5,), layers=(1, 2))
    plan = planned_runs(["generation", "table4", "table6", "fig7", "fig8", "case"], opts)  # report order
    assert plan[:9] == [(m, 0, {}) for m in TABLE4_MODELS] and plan[9:18] == [(m, 1, {}) for m in TABLE4_MODELS]
    assert plan[18:22] == [("wg", 0, {"model.gnn_layers": 1}), ("wg", 0, {"model.gnn_layers": 2}),
                           ("ag", 0, {"model.gnn_layers": 1}), ("ag", 0, {"model.gnn_layers": 2})]
    assert ("ag", 1, {"train.negative_ratio": 5}) in plan
    assert plan[-5:] == [("ag", 0, {}), ("wg", 0, {}), ("ag", 0, {}), ("wg", 0, {}), ("wg", 1, {})]  # fig8, case, gen.
    assert planned_runs(["table5"], ExperimentOptions(seeds=(2,))) == [(m, 2, {}) for m in TABLE5_MODELS]


def test_parse_list_and_options():
    assert parse_list("table6, fig6,table6", str, ("table6", "fig6")) == ("table6", "fig6")
    assert parse_list("0,1,2", int) == (0, 1, 2)
    with pytest.raises(ValueError, match="unknown value"):
        parse_list("table9", str, ("table6",))
    with pytest.raises(ValueError, match="comma-separated list of int"):
        parse_list("a", int)
    ExperimentOptions().check(0.01)
    with pytest.raises(ValueError, match="thresholds"):
        ExperimentOptions(thresholds=(0.005,)).check(0.01)
    with pytest.raises(ValueError, match="mask_model"):
        ExperimentOptions(mask_model="gnn").check(0.01)
    with pytest.raises(ValueError, match="patient group"):
        ExperimentOptions(groups=("other=age:infant",)).check(0.01)


def test_plots_are_pngs_and_check_lengths():
    assert plots.grouped_bars(["WG-0.01", "WG-0.1"], {"F1": ([0.5, 0.4], [0.01, 0.0])}).startswith(PNG)
    assert plots.line_panels([1, 5], {"DPR-WG": {"F1": ([0.5, 0.4], [0.0, 0.1])}}).startswith(PNG)
    xy = np.random.default_rng(0).normal(size=(20, 2))
    assert plots.group_scatter(xy, ["other"] * 15 + ["infant"] * 5, ["infant", "pregnant"]).startswith(PNG)
    with pytest.raises(ValueError, match="expected 2"):
        plots.grouped_bars(["a", "b"], {"F1": ([0.5], [0.0])})
    with pytest.raises(ValueError, match="xy"):
        plots.group_scatter(xy, ["other"], ["other"])


def test_generated_sets_as_candidates():
    s = [[GeneratedPackage(np.array([1, 2]), "s1"), GeneratedPackage(np.array([3]), "s1"),
          GeneratedPackage(np.array([1, 2, 4]), "s2")], [], [GeneratedPackage(np.array([5, 6]), "s1")]]
    cands, n_s1 = as_candidates(s)
    assert n_s1.tolist() == [2, 0, 1] and cands.counts.tolist() == [3, 0, 1]
    assert [[p.tolist() for p in row] for row in cands.packages] == [[[1, 2], [3], [1, 2, 4]], [], [[5, 6]]]
    slot, picked = cands.pick(np.array([0.1, 0.1, 0.3, -1.0]))
    assert slot.tolist() == [2, -1, 0] and picked[0].tolist() == [1, 2, 4] and picked[1].size == 0


# ----------------------------------------------------------------------------- analyses on toy bundles
def test_generation_s1_pick_equals_the_evaluated_pick():
    b, q = toy_bundle("wg"), toy_records(23, 8, "Q")
    gen = GenerationConfig(top_l=5, low_rank_l=8, unpopular_rank_L=4, rare_support=0.4)
    out = generation_metrics(b, q, gen)
    evaluated = evaluate_models(b, q, ["wg"])[0]["wg"]
    for key in ("f1", "precision", "recall", "jaccard", "antagonism_rate", "ceiling_f1"):
        assert out["s1"][key] == pytest.approx(evaluated[key], abs=1e-12), key
    assert out["mean_s"] > out["mean_s1"] > 0  # the rules generated packages
    assert 0.0 <= out["picked_generated"] <= 1.0
    assert out["s"]["ceiling_f1"] >= out["s1"]["ceiling_f1"]  # S contains S1
    assert out["s"]["n"] == out["s1"]["n"] == 23


def test_mask_tsne_groups_and_deviation():
    b, q = toy_bundle("ag"), toy_records(40, 9, "Q")
    res = mask_tsne(b, q, ["infant=age:infant", "pregnant=gender:f,lab:hcg:high"], max_patients=30, seed=0)
    assert res.xy.shape == (30, 2) and np.isfinite(res.xy).all()
    names = [s[0] for s in res.summary]
    assert names == ["infant", "pregnant", "other"] and sum(s[1] for s in res.summary) == 30
    assert res.summary[-1][2] == pytest.approx(1.0)
    again = mask_tsne(b, q, ["infant=age:infant"], max_patients=30, seed=0)
    np.testing.assert_allclose(again.xy, res.xy)
    with pytest.raises(ValueError, match="no mask layer"):
        mask_tsne(toy_bundle("gnn"), q, [], 30, 0)


def test_case_study_tables(tmp_path):
    wg, ag = toy_bundle("wg", path=str(tmp_path / "wg")), toy_bundle("ag", path=str(tmp_path / "ag"))
    record = toy_records(1, 12, "C")
    record = record.set_column(3, "drug_ids", pa.array([list(range(20))], pa.list_(pa.int32())))
    md = case_study_markdown(record, wg, ag, max_rows=4, seed=0)
    assert "record `C000`" in md and "Table 7" in md and "Table 8" in md
    t7, t8 = md.split("### Table 8")
    rows7 = [ln for ln in t7.splitlines() if ln.startswith("| drug")]
    rows8 = [ln for ln in t8.splitlines() if ln.startswith("| drug")]
    assert len(rows7) == 4 and len(rows8) == 4  # capped at max_rows
    assert all(("Synergism" in r) != ("Antagonism" in r) for r in rows7 + rows8)
    assert "may affect" in t7 and "\\|" in t7  # descriptions from the model directory, pipes escaped
    factors = [float(r.rstrip(" |").rsplit("|", 1)[1]) for r in rows7]
    assert all(-1 <= f <= 1 for f in factors)
    probs = re.findall(r"\[([0-9.]+), ([0-9.]+), ([0-9.]+)\]", t8)
    assert len(probs) == 8 and all(sum(map(float, p)) == pytest.approx(1, abs=2e-3) for p in probs)
    head = type_head_metrics(ag.model, ag.relation)  # the line that says how far to trust them
    assert f"on all {head['type_pairs']:,} labelled pairs of R" in t8
    assert f"right for {head['type_accuracy']:.1%}" in t8 and "`model.type_targets: graph`" in t8


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_experiment_writes_every_section(experiment):
    report = experiment["report"]
    for name in ("report.md", "table6.md", "fig6.md", "fig8.md", "case.md", "generation.md", "results.json"):
        assert (report / name).is_file(), name
    for name in ("fig6.png", "fig8.png"):
        assert (report / name).read_bytes().startswith(PNG)
    assert not (report / "table4.md").exists() and not (report / "fig7.png").exists()
    text = (report / "report.md").read_text()
    assert all(f"## {t}" in text for t in ("Table 6", "Figure 6", "Figure 8", "Case study", "Package generation"))
    prepared = experiment["out"] / "prepared" / "manifest.json"
    assert json.loads(prepared.read_text())["created"] == experiment["created"]  # no rebuild


@pytest.mark.slow
def test_experiment_tables_have_their_rows(experiment):
    report = experiment["report"]

    def rows(name):
        return [ln.split("|")[1].strip() for ln in (report / name).read_text().splitlines()
                if ln.startswith("| ") and not ln.startswith("| Model") and not ln.startswith("| Group")
                and not ln.startswith("| Candidates")]

    table6 = ["DPR-WG-1", "DPR-WG-2", "DPR-AG-1", "DPR-AG-2"]
    assert rows("table6.md") == table6 * 2  # the paper's pick, then by expected F1 (mbr=1)
    assert "Picking by expected F1 (T = 1)" in (report / "table6.md").read_text()
    assert rows("fig6.md") == [f"DPR-{m}-{t}" for m in ("WG", "AG") for t in ("0.01", "0.1")] * 2
    assert rows("fig8.md") == ["infant", "pregnant", "liver disease", "other"]
    assert rows("generation.md") == ["S1 (non-heuristic)", "S = S1 ∪ S2 ∪ S3 (heuristic)",
                                     "S, picked by expected F1"]
    case = (report / "case.md").read_text()
    assert "Table 7" in case and "Table 8" in case and "Synergism" in case


@pytest.mark.slow
def test_experiment_runs_are_shared_and_named_by_setting(experiment):
    from dpr_dist.train.modeldir import load_model_dir
    from dpr_dist.train.prepared import read_records

    results = json.loads((experiment["report"] / "results.json").read_text())
    runs = sorted((r["run"], r["model"]) for r in results)
    assert runs == sorted((f"tiny{tag}", m) for m in ("wg", "ag") for tag in ("", "-l2", "-t0.1"))
    # trained up front (two at a time, the pipeline's config), before any section asked for them
    assert sorted(experiment["res"]["trained"]) == sorted(f"tiny-{t}-{m}" for m in ("wg", "ag") for t in ("l2", "t0.1"))
    assert experiment["res"]["unplanned"] == []
    by_run = {(r["run"], r["model"]): r for r in results}
    # the pipeline's runs of the config's own seed are reused, not trained again
    out = experiment["out"]
    for m in ("wg", "ag"):
        assert by_run[("tiny", m)]["model_dir"] == experiment["pipeline"]["model_dirs"][m]
        assert by_run[("tiny", m)]["f1"] == experiment["pipeline"]["metrics"][m]["f1"]
    assert experiment["before"] == {m: sorted(p.name for p in (out / "runs" / f"tiny-{m}").glob("epoch_*"))
                                    for m in ("ncf", "wg", "ag")}
    assert by_run[("tiny-t0.1", "wg")]["settings"]["data.threshold"] == 0.1
    assert by_run[("tiny-l2", "ag")]["settings"]["model.gnn_layers"] == 2
    assert load_model_dir(by_run[("tiny-t0.1", "ag")]["model_dir"]).threshold == 0.1
    assert load_model_dir(by_run[("tiny-l2", "wg")]["model_dir"]).cfg.model.gnn_layers == 2
    # the expected-F1 picks are those of dpr evaluate --mbr, stored with the model directory
    for m in ("wg", "ag"):
        bundle = load_model_dir(by_run[("tiny", m)]["model_dir"])
        direct = evaluate_models(bundle, read_records(str(out / "prepared"), "test"), [m], mbr_temperature=1.0)[0]
        assert by_run[("tiny", m)]["mbr"]["f1"] == pytest.approx(direct[f"{m}+mbr"]["f1"], abs=1e-12)
        assert bundle.metrics["test_mbr"]["mbr_temperature"] == 1.0
    # the S1 pick of package generation is DPR-WG's own test pick
    gen = (experiment["report"] / "generation.md").read_text()
    s1_f1 = float(gen.split("| S1 (non-heuristic) | ")[1].split(" |")[0])
    assert s1_f1 == pytest.approx(by_run[("tiny", "wg")]["f1"], abs=1e-4)
    assert experiment["res"]["report"].endswith("report.md")


@pytest.mark.slow
def test_find_record_by_id_in_any_split(tiny_prepared):
    from dpr_dist.train.prepared import read_records

    prepared = str(tiny_prepared["dir"])
    wanted = read_records(prepared, "val")["record_id"][3].as_py()
    b = toy_bundle("wg")
    assert find_record(prepared, wanted, b)["record_id"].to_pylist() == [wanted]
    with pytest.raises(ValueError, match="'no-such-record' is not in the prepared data"):
        find_record(prepared, "no-such-record", b)


class FakeRuns:
    """Stands in for :class:`Runs`: metrics made up from the model, seed and settings."""

    def __init__(self):
        self.test = pa.table({"record_id": ["a", "b", "c"]})
        self.rows = {}

    def run(self, model, seed, **settings):
        f1 = 0.1 + 0.01 * len(model) + 0.001 * seed + 0.0001 * sum(float(v) for v in settings.values())
        row = {"model": model, "seed": seed, "precision": f1, "recall": f1 + 0.1, "f1": f1, "jaccard": f1 / 2,
               "antagonism_rate": 0.01, "true_antagonism_rate": 0.02, "ceiling_f1": None if model == "ncf" else 0.6,
               "f1_of_ceiling": None if model == "ncf" else f1 / 0.6}
        if model != "ncf":
            row["mbr"] = {**row, "f1": f1 + 0.01}
        self.rows[(model, seed, tuple(sorted(settings.items())))] = row
        return row


def test_table_sections_and_figure_7(tmp_path):
    from dpr_dist.eval.experiments import SECTIONS

    runs, opts = FakeRuns(), ExperimentOptions(seeds=(0, 1))
    t4 = SECTIONS["table4"](runs, opts, str(tmp_path))
    rows = [ln.split("|")[1].strip() for ln in t4.splitlines() if ln.startswith("| ") and not ln.startswith("| Model")]
    assert rows == ["NCF", "NN", "Package2vec", "LDA", "BR", "DAM", "GNN", "DPR-WG", "DPR-AG"]
    assert "| NCF | 0.1305 ± 0.0007 |" in t4 and t4.count(" | - |") == 1  # NCF has no ceiling
    assert "True packages' antagonism rate: 0.0200 ± 0.0000" in t4 and "mean ± standard deviation over seeds 0, 1" in t4
    t5 = SECTIONS["table5"](runs, opts, str(tmp_path))
    assert [ln.split("|")[1].strip() for ln in t5.splitlines() if ln.startswith("| DPR")] == [
        "DPR-WG-Context", "DPR-WG-Type", "DPR-AG-Mask", "DPR-AG-Type", "DPR-WG", "DPR-AG"]
    f7 = SECTIONS["fig7"](runs, replace(opts, negatives=(1, 5)), str(tmp_path))
    assert (tmp_path / "fig7.png").read_bytes().startswith(PNG) and "![fig7](fig7.png)" in f7
    assert [ln.split("|")[1].strip() for ln in f7.splitlines() if ln.startswith("| DPR")] == [
        "DPR-WG-1", "DPR-WG-5", "DPR-AG-1", "DPR-AG-5"]
    assert ("wg", 1, (("train.negative_ratio", 5),)) in runs.rows
    assert "Picking by expected F1" not in t4 + t5 + f7


def test_table_with_expected_f1_picks(tmp_path):
    from dpr_dist.eval.experiments import SECTIONS

    runs, opts = FakeRuns(), ExperimentOptions(seeds=(0, 1), mbr=1.0)
    t4 = SECTIONS["table4"](runs, opts, str(tmp_path))
    main, mbr = t4.split("Picking by expected F1 (T = 1)")
    assert "| Model | F1 (best score) | Precision |" in mbr
    rows = [ln.split("|")[1:4] for ln in mbr.splitlines() if ln.startswith("| ") and not ln.startswith("| Model")]
    assert [r[0].strip() for r in rows] == ["NN", "Package2vec", "LDA", "BR", "DAM", "GNN", "DPR-WG", "DPR-AG"]
    # DPR-AG: F1 0.1200 / 0.1210 at seeds 0 / 1 picking the best score, 0.01 more by expected F1
    assert [c.strip() for c in rows[-1][1:]] == ["0.1205 ± 0.0007", "0.1205 ± 0.0007"]  # precision unchanged
    assert "| DPR-AG | 0.1205 ± 0.0007 | 0.1205 ± 0.0007 | 0.2205 ± 0.0007 | 0.1305 ± 0.0007 |" in mbr
    assert "its row is the candidate set's medoid" in mbr and "True packages' antagonism rate" in mbr
    assert "medoid" not in SECTIONS["table5"](runs, opts, str(tmp_path))  # no NN row
    inf = SECTIONS["table5"](runs, replace(opts, mbr=float("inf")), str(tmp_path))
    assert "Picking by expected F1 (T = ∞)" in inf and "every model picks the candidate set's medoid" in inf



def test_command_line_options(tmp_path):
    import argparse
    import subprocess
    import sys

    from dpr_dist.eval.experiment_options import add_arguments, options_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--out", "x", "--seeds", "3,4", "--thresholds", "0.02,0.2", "--group", "old=age:elderly",
                         "--patient", "R1"])
    opts = options_from_args(args)
    assert (opts.seeds, opts.thresholds, opts.groups, opts.patient) == ((3, 4), (0.02, 0.2), ("old=age:elderly",), "R1")
    assert options_from_args(p.parse_args(["--out", "x"])) == ExperimentOptions()
    assert options_from_args(p.parse_args(["--out", "x", "--mbr"])).mbr == 1.0
    assert options_from_args(p.parse_args(["--out", "x", "--mbr", "inf"])).mbr == float("inf")
    with pytest.raises(ValueError, match="experiment option mbr=0.0 must be > 0"):
        ExperimentOptions(mbr=0.0).check(0.0)
    res = subprocess.run([sys.executable, str(REPO / "jobs" / "experiment.py"), "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--which" in res.stdout and "--config" in res.stdout, res.stderr
