"""``dpr pipeline``: every model of Table 4 through ``train`` + ``evaluate`` on tiny data, and
results anyone can recompute from ``predictions.parquet``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dpr_dist.config import load_config
from dpr_dist.eval.evaluate import evaluate
from dpr_dist.eval.pipeline import (
    PIPELINE_MODELS, metrics_markdown, output_config, parse_models, prepare_inputs)
from dpr_dist.models.baselines import BR, DAM, LDA, NearestNeighbor, Package2vec
from dpr_dist.models.dpr import DPR
from dpr_dist.train.modeldir import load_model_dir
from dpr_dist.train.prepared import read_records

REPO = Path(__file__).resolve().parents[2]
KEYS = ("precision", "recall", "f1", "jaccard", "antagonism_rate", "true_antagonism_rate", "ceiling_f1",
        "f1_of_ceiling", "n", "best_val_f1")
MODELS = (*PIPELINE_MODELS, "popularity")  # what the session's pipeline_run trains
CLASSES = {"nn": NearestNeighbor, "package2vec": Package2vec, "lda": LDA, "br": BR, "dam": DAM, "gnn": DPR,
           "wg": DPR, "ag": DPR}


def test_parse_models():
    assert parse_models("ncf, ag,ncf,popularity") == ("ncf", "ag", "popularity")
    assert parse_models(["wg_type", "lda"]) == ("wg_type", "lda")
    with pytest.raises(ValueError, match=r"unknown model\(s\) \['dpr'\]"):
        parse_models("ncf,dpr")
    with pytest.raises(ValueError, match="no models"):
        parse_models(" , ")


def test_output_config_puts_everything_under_out():
    cfg = output_config(load_config(None), "/x/out", "in/emr", "in/ddi.parquet")
    assert (cfg.data.prepared, cfg.train.storage_path) == ("/x/out/prepared", "/x/out/runs")
    assert (cfg.data.emr, cfg.data.ddi) == ("in/emr", "in/ddi.parquet")


def test_prepared_data_of_other_inputs_is_refused(tmp_path):
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "manifest.json").write_text(json.dumps({"inputs": {"emr": "a", "ddi": "b"}, "seed": 0}))
    cfg = output_config(load_config(None), str(tmp_path), "other-emr", "b")
    with pytest.raises(ValueError, match="other inputs"):
        prepare_inputs(cfg)
    with pytest.raises(FileNotFoundError, match="EMR input"):
        prepare_inputs(output_config(load_config(None), str(tmp_path / "new"), str(tmp_path / "nothing"), "b"))


def test_metrics_markdown():
    md = metrics_markdown({"ncf": {"f1": 0.5, "ceiling_f1": None}}, "test", 7)
    assert md.splitlines()[0] == "# test metrics (7 records)"
    assert md.splitlines()[-1].startswith("| ncf | - | - | 0.5000 |")


@pytest.fixture(scope="module")
def run(pipeline_run):
    assert pipeline_run["models"] == MODELS
    return pipeline_run


def recomputed(pred, test, names) -> dict[str, dict[str, float]]:
    """Per model: mean precision, recall, F1 and Jaccard of the predicted drug names against the true ones."""
    true = {rid: {names[i] for i in ids} for rid, ids in zip(test["record_id"].to_pylist(),
                                                             test["drug_ids"].to_pylist())}
    out = {}
    for model in pred["model"].unique().to_pylist():
        rows = pred.filter(pc.equal(pred["model"], model))
        p, r, f, j = [], [], [], []
        for rid, drugs in zip(rows["record_id"].to_pylist(), rows["drugs"].to_pylist()):
            got, want = set(drugs), true[rid]
            hit = len(got & want)
            p.append(hit / len(got) if got else 0.0)
            r.append(hit / len(want) if want else 0.0)
            f.append(2 * p[-1] * r[-1] / (p[-1] + r[-1]) if p[-1] + r[-1] else 0.0)
            j.append(hit / len(got | want) if got | want else 0.0)
        out[model] = {"precision": np.mean(p), "recall": np.mean(r), "f1": np.mean(f), "jaccard": np.mean(j)}
    return out


@pytest.mark.slow
def test_pipeline_writes_metrics_for_every_model(run):
    out = run["out"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == list(MODELS)
    for name, m in metrics.items():
        assert all(k in m for k in KEYS if not (name == "popularity" and k == "best_val_f1")), name
        assert 0 <= m["f1"] <= 1 and m["n"] == metrics["ncf"]["n"]
        picks = name not in ("ncf", "popularity")
        assert (m["ceiling_f1"] is not None) == picks, name
        if picks:
            assert m["f1"] <= m["ceiling_f1"] + 1e-12
    assert len({m["true_antagonism_rate"] for m in metrics.values()}) == 1
    assert (out / "metrics.md").read_text().count("\n| ") == 1 + len(MODELS)  # header + one row per model
    assert run["result"]["metrics"]["ag"]["f1"] == metrics["ag"]["f1"]


@pytest.mark.slow
def test_metrics_recompute_from_predictions(run):
    out = run["out"]
    pred = pq.read_table(out / "predictions.parquet")
    assert pred.column_names == ["record_id", "model", "drugs"]
    test = read_records(str(out / "prepared"), "test")
    assert pred.num_rows == len(MODELS) * test.num_rows
    names = pq.read_table(out / "prepared" / "vocab" / "drugs.parquet")["name"].to_pylist()
    again = recomputed(pred, test, names)
    metrics = json.loads((out / "metrics.json").read_text())
    for model, mine in again.items():
        for key, value in mine.items():
            assert metrics[model][key] == pytest.approx(value, abs=1e-12), (model, key)


@pytest.mark.slow
def test_every_baseline_trained_through_the_trainer(run):
    dirs = run["result"]["model_dirs"]
    assert set(dirs) == set(PIPELINE_MODELS)
    for name, cls in CLASSES.items():
        bundle = load_model_dir(dirs[name])
        assert type(bundle.model) is cls and bundle.model_name == name
        history = bundle.metrics["history"]
        assert len(history) == (1 if name == "nn" else run["cfg"].train.epochs), name
        assert bundle.metrics["test"]["f1"] == json.loads((run["out"] / "metrics.json").read_text())[name]["f1"]
        if name != "nn":
            assert history[0]["records"] > 0 and history[-1]["pair_acc"] > 0
    for name in ("package2vec", "lda"):  # fitted on rank 0, broadcast by DDP, kept in the directory
        assert bool(load_model_dir(dirs[name]).model.fitted)
    nn_bundle = load_model_dir(dirs["nn"])
    assert nn_bundle.metrics["history"][0]["records"] == 0  # NN: validation only, on the driver
    assert nn_bundle.metrics["checkpoint"] is None and not (Path(dirs["nn"]).parent / "epoch_0000").exists()
    # the evaluator's candidate procedure gives the same F1
    assert nn_bundle.metrics["best_val_f1"] == pytest.approx(
        evaluate(nn_bundle, read_records(str(run["out"] / "prepared"), "val"))[0]["f1"], abs=1e-12)
    relation = pq.read_table(Path(dirs["ag"]) / "relation.parquet")
    assert "description" in relation.column_names and relation["description"].null_count < relation.num_rows
    runs = {p.name for p in (run["out"] / "runs").iterdir()}
    assert {f"tiny-{m}" for m in PIPELINE_MODELS} <= runs


@pytest.mark.slow
def test_runs_train_two_at_a_time_after_pre_training(run):
    """``train.parallel_runs=2``: NCF pre-trains alone, then the models' Ray Train runs (as
    Ray Train's state actor recorded them) never number more than two at once, and do overlap."""
    import ray
    from ray.train.v2._internal.state.state_actor import get_state_actor

    lo, hi = run["span_ns"]
    trained = {f"tiny-{m}" for m in ("package2vec", "lda", "br", "dam", "gnn", "wg", "ag")}  # NN: no Train run
    spans = {r.name: (r.start_time_ns, r.end_time_ns) for r in ray.get(get_state_actor().get_train_runs.remote()).values()
             if lo <= r.start_time_ns and r.end_time_ns is not None and r.end_time_ns <= hi}
    assert set(spans) == trained | {"tiny-ncf"}, sorted(spans)
    pre = spans.pop("tiny-ncf")
    assert all(start >= pre[1] for start, _ in spans.values())  # every model starts from the pre-training
    events = sorted([(s, 1) for s, _ in spans.values()] + [(e, -1) for _, e in spans.values()])
    at_once = np.cumsum([d for _, d in events])
    assert at_once.max() == 2 and at_once.min() >= 0


@pytest.mark.slow
def test_a_failed_run_stops_new_starts_and_is_named(run, tmp_path):
    """``train_runs`` two at a time: a run without its prepared data fails; the run beside it
    finishes (and is handed to ``on_done``), no run starts after the failure, and the error
    names the failed run."""
    from dataclasses import replace

    from dpr_dist.train.parallel import RunRequest, RunsFailed, train_runs

    ncf = str(run["out"] / "runs" / "tiny-ncf")  # NN trains nothing: each run validates on the pre-training

    def request(name: str, **data) -> RunRequest:
        cfg = output_config(run["cfg"], str(run["out"]))  # the pipeline's prepared data
        cfg = replace(cfg, data=replace(cfg.data, **data), train=replace(cfg.train, name=name,
                                                                          storage_path=str(tmp_path / "runs")))
        return RunRequest(cfg, "nn", pretrained=ncf)

    bad, good, third = request("bad", prepared=str(tmp_path / "missing")), request("good"), request("third")
    done = []
    with pytest.raises(RunsFailed) as exc:
        train_runs([bad, good, third], parallel=2, on_done=lambda i, path: done.append((i, path)))
    err = exc.value
    assert list(err.errors) == ["bad-nn"] and isinstance(err.errors["bad-nn"], FileNotFoundError), str(err)
    assert "bad-nn: FileNotFoundError" in str(err) and "re-running resumes them" in str(err)
    assert (tmp_path / "runs" / "good-nn" / "model" / "bundle.json").is_file()
    # the third starts only if "good" ended before "bad" failed; never after the failure
    third_dir = (tmp_path / "runs" / "third-nn" / "model" / "bundle.json").is_file()
    assert err.not_started == ([] if third_dir else ["third-nn"])
    assert done[0] == (1, str(tmp_path / "runs" / "good-nn" / "model")) and len(done) == 1 + third_dir
    with pytest.raises(FileNotFoundError, match="no prepared data"):  # one at a time: the error as it is
        train_runs([bad], parallel=1)
