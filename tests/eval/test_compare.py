"""Paired comparison of two models' picks, bootstrapped over patients (dpr_dist/eval/compare.py)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dpr_dist.cli import main
from dpr_dist.eval.compare import Truth, compare, parse_side, patient_bootstrap, per_record

TRUTH = Truth(["r1", "r2", "r3", "r4"], ["p1", "p1", "p2", "p3"],
              [frozenset({"a", "b"}), frozenset({"c"}), frozenset({"a", "b", "c", "d"}), frozenset({"e"})])


def picks(model: str, rows: dict[str, list[str]]) -> pa.Table:
    return pa.table({"record_id": list(rows), "model": [model] * len(rows), "drugs": list(rows.values())})


def test_per_record_metrics_by_hand():
    table = picks("wg", {"r1": ["a", "x"], "r2": [], "r3": ["a", "b", "c", "d"], "r4": ["x", "y"]})
    got = per_record(table, "wg", TRUTH)
    np.testing.assert_allclose(got["precision"], [0.5, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(got["recall"], [0.5, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(got["f1"], [0.5, 0.0, 1.0, 0.0])  # empty pick, empty intersection: 0
    np.testing.assert_allclose(got["jaccard"], [1 / 3, 0.0, 1.0, 0.0])


def test_picks_must_cover_the_split_once(tmp_path):
    full = {"r1": ["a"], "r2": ["c"], "r3": ["a"], "r4": ["e"]}
    with pytest.raises(ValueError, match="no pick for record r4"):
        per_record(picks("wg", {k: v for k, v in full.items() if k != "r4"}), "wg", TRUTH)
    with pytest.raises(ValueError, match="record r9, which is not in the split"):
        per_record(picks("wg", {**full, "r9": ["a"]}), "wg", TRUTH)
    with pytest.raises(ValueError, match="two picks for record r1"):
        per_record(pa.concat_tables([picks("wg", full), picks("wg", {"r1": ["b"]})]), "wg", TRUTH)
    with pytest.raises(ValueError, match=r"no picks of model 'ag' \(models: \['wg'\]\)"):
        per_record(picks("wg", full), "ag", TRUTH)


def test_bootstrap_of_a_constant_difference():
    out = patient_bootstrap(np.full(50, 0.1), np.arange(50) // 5, n_boot=500)
    assert out["mean"] == pytest.approx(0.1) and out["low"] == pytest.approx(0.1) and out["high"] == pytest.approx(0.1)
    assert out["p"] == pytest.approx(1 / 500)  # every bootstrap mean is above zero


def test_bootstrap_resamples_whole_patients():
    """One patient with 100 records all +1 and 100 patients with one record of 0 each: by
    record the interval would be narrow; a patient's records move together, so it is wide."""
    diff = np.r_[np.ones(100), np.zeros(100)]
    by_patient = np.r_[np.zeros(100, int), np.arange(1, 101)]
    wide = patient_bootstrap(diff, by_patient, n_boot=2000, seed=1)
    narrow = patient_bootstrap(diff, np.arange(200), n_boot=2000, seed=1)
    assert wide["mean"] == narrow["mean"] == pytest.approx(0.5)
    assert wide["high"] - wide["low"] > 3 * (narrow["high"] - narrow["low"])
    assert wide["low"] <= 0.5 <= wide["high"]


def test_a_symmetric_difference_is_not_significant():
    rng = np.random.default_rng(0)
    d = rng.choice([-0.2, 0.2], size=400)
    d -= d.mean()
    out = patient_bootstrap(d, np.arange(400) // 2, n_boot=2000)
    assert out["low"] < 0 < out["high"] and out["p"] > 0.5


def test_compare_counts_better_worse_level():
    a = {"f1": np.array([0.5, 0.0, 1.0, 0.3])}
    b = {"f1": np.array([0.4, 0.0, 1.0, 0.6])}
    out = compare({**a, **{k: a["f1"] for k in ("precision", "recall", "jaccard")}},
                  {**b, **{k: b["f1"] for k in ("precision", "recall", "jaccard")}}, TRUTH, n_boot=200)
    assert (out["records"], out["patients"]) == (4, 3)
    assert out["diff"] == pytest.approx(-0.05) and out["a"] == pytest.approx(0.45)
    assert (out["better"], out["worse"], out["level"]) == (0.25, 0.25, 0.5)
    with pytest.raises(ValueError, match="metric must be one of"):
        compare(a, b, TRUTH, metric="auc")


def test_parse_side_keeps_s3_uris_whole():
    assert parse_side("runs/x/predictions.parquet:wg") == ("runs/x/predictions.parquet", "wg")
    assert parse_side("runs/x/predictions.parquet") == ("runs/x/predictions.parquet", None)
    assert parse_side("s3://b/x/predictions.parquet") == ("s3://b/x/predictions.parquet", None)
    assert parse_side("s3://b/x/predictions.parquet:ag") == ("s3://b/x/predictions.parquet", "ag")


def _prepared(root):
    names = ["a", "b", "c", "d", "e"]
    (root / "vocab").mkdir(parents=True)
    pq.write_table(pa.table({"name": names}), root / "vocab" / "drugs.parquet")
    split = root / "records" / "split=test"
    split.mkdir(parents=True)
    ids = {rid: [names.index(n) for n in sorted(pkg)] for rid, pkg in zip(TRUTH.record_ids, TRUTH.packages)}
    pq.write_table(pa.table({"record_id": list(reversed(TRUTH.record_ids)),  # any file order
                             "patient_id": list(reversed(TRUTH.patient_ids)),
                             "drug_ids": [ids[r] for r in reversed(TRUTH.record_ids)]}), split / "part-0.parquet")
    return root


def test_truth_from_prepared_data(tmp_path):
    truth = Truth.from_prepared(str(_prepared(tmp_path / "prepared")), "test")
    assert truth == TRUTH
    with pytest.raises(FileNotFoundError, match="has no val split"):
        Truth.from_prepared(str(tmp_path / "prepared"), "val")


def test_dpr_compare_on_the_command_line(tmp_path, dpr_stdout, capsys):
    prepared = _prepared(tmp_path / "prepared")
    both = pa.concat_tables([picks("wg", {"r1": ["a", "b"], "r2": ["c"], "r3": ["a"], "r4": ["e"]}),
                             picks("gnn", {"r1": ["a"], "r2": ["c"], "r3": ["a"], "r4": ["x"]})])
    pq.write_table(both, tmp_path / "predictions.parquet")
    pred = str(tmp_path / "predictions.parquet")
    out = tmp_path / "compare.json"
    assert main(["compare", "--prepared", str(prepared), "--a", f"{pred}:wg", "--b", f"{pred}:gnn",
                 "--boot", "300", "--out", str(out)]) == 0
    text = dpr_stdout()
    assert "| wg (" in text and "| gnn (" in text and "4 (3)" in text
    row = json.loads(out.read_text())[0]
    assert row["diff"] > 0 and row["better"] == 0.5 and row["worse"] == 0.0
    # a file of two models needs :MODEL; --a and --b come in pairs; errors name the problem
    assert main(["compare", "--prepared", str(prepared), "--a", pred, "--b", f"{pred}:gnn"]) == 2
    assert "name one as" in capsys.readouterr().err
    assert main(["compare", "--prepared", str(prepared), "--a", f"{pred}:wg", "--a", f"{pred}:wg",
                 "--b", f"{pred}:gnn"]) == 2
    assert "pass them in pairs" in capsys.readouterr().err


def test_pooled_row_averages_each_record_over_the_pairs(tmp_path):
    from dpr_dist.eval.compare import compare_files

    prepared = _prepared(tmp_path / "prepared")
    seeds = [({"r1": ["a", "b"], "r2": ["c"], "r3": ["a"], "r4": ["e"]}, {"r1": ["a"], "r2": ["c"], "r3": ["a"], "r4": ["x"]}),
             ({"r1": ["x"], "r2": ["c"], "r3": ["a"], "r4": ["e"]}, {"r1": ["a"], "r2": ["x"], "r3": ["a"], "r4": ["e"]})]
    pairs = []
    for i, (a, b) in enumerate(seeds):
        pq.write_table(pa.concat_tables([picks("wg", a), picks("gnn", b)]), tmp_path / f"s{i}.parquet")
        pairs.append((f"{tmp_path}/s{i}.parquet:wg", f"{tmp_path}/s{i}.parquet:gnn"))
    rows = compare_files(str(prepared), "test", pairs, n_boot=300, pool=True)
    assert len(rows) == 3 and rows[2]["label_a"] == "all pairs"
    assert rows[2]["a"] == pytest.approx((rows[0]["a"] + rows[1]["a"]) / 2)
    assert rows[2]["diff"] == pytest.approx((rows[0]["diff"] + rows[1]["diff"]) / 2)
    # per record over both seeds: r1 (1 + 0)/2 vs (2/3 + 2/3)/2, r2 (1 + 1)/2 vs (1 + 0)/2, r4 (1 + 1)/2 vs (0 + 1)/2
    assert rows[2]["better"] == pytest.approx(0.5) and rows[2]["worse"] == pytest.approx(0.25)
    assert len(compare_files(str(prepared), "test", pairs[:1], n_boot=300, pool=True)) == 1


def test_bootstrap_in_blocks_gives_the_same_interval(monkeypatch):
    """Large splits draw the bootstrap in blocks (bounded memory); the result does not depend on it."""
    import dpr_dist.eval.compare as cmp

    rng = np.random.default_rng(3)
    diff, groups = rng.normal(0.01, 0.2, 600), rng.integers(0, 400, 600)
    whole = cmp.patient_bootstrap(diff, groups, n_boot=500, seed=2)
    monkeypatch.setattr(cmp, "BOOT_BLOCK", 400 * 7)  # 7 samples per block, the last block shorter
    blocks = cmp.patient_bootstrap(diff, groups, n_boot=500, seed=2)
    assert blocks == pytest.approx(whole)
