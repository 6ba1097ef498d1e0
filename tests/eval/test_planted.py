"""The audit of picks against the synthetic generator's planted rules and contraindications
(:mod:`dpr_dist.eval.planted`) and ``dpr planted``: hand-checked cases, errors, and the CLI
on data written by ``dpr synth``."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dpr_dist.cli import main
from dpr_dist.data import synth
from dpr_dist.eval.planted import planted_audit, regenerate_truth

ARGS = dict(records=600, drugs=80, seed=3, conditions=16, mean_package=10)


@pytest.fixture(scope="module")
def generated():
    emr, _, truth = synth.generate_with_truth(**ARGS)
    return emr, truth


def _true_names(truth, row: int) -> list[str]:
    off = truth.package_offsets
    return [truth.drug_names[d] for d in truth.package_drugs[off[row]:off[row + 1]]]


def _record_with(truth, condition: str, without: set[str]) -> int:
    """A non-random record with ``condition`` whose true package holds none of ``without``."""
    c = truth.conditions.index(condition)
    for row in range(len(truth.hard)):
        if c in truth.record_conditions[row] and not truth.hard[row] and not without & set(_true_names(truth, row)):
            return row
    raise AssertionError(f"no record with {condition} in the generated data")


def test_true_packages_mostly_keep_the_rules_and_score_f1_one(generated):
    emr, truth = generated
    rows = range(emr.num_rows)
    audit = planted_audit(truth, [f"R{r:06d}" for r in rows], [_true_names(truth, r) for r in rows])
    assert audit["n"] == emr.num_rows and audit["f1"] == pytest.approx(1.0)
    assert audit["rule_violating"] == audit["true_rule_violating"] < 0.05
    assert audit["contraindicated"] == audit["true_contraindicated"] < 0.05
    # removing avoided drugs from a true package can only lower its F1
    assert audit["f1_gain_bound"] <= 0.0


def test_a_broken_rule_is_counted_and_its_dropped_drug_repaired(generated):
    _, truth = generated
    cond, kept, dropped = truth.rules[0]
    row = _record_with(truth, cond, {kept, dropped})
    true = _true_names(truth, row)
    # EMR spellings: lower case, strength and form after the name
    pick = true + [kept.lower(), f"{dropped} 500 mg tablet"]
    audit = planted_audit(truth, [f"R{row:06d}"], [pick])
    assert audit["rule_violating"] == 1.0 and audit["true_rule_violating"] == 0.0
    n = len(set(true))
    assert audit["f1"] == pytest.approx(2 * n / (2 * n + 2))
    assert audit["f1_repaired"] == pytest.approx(2 * n / (2 * n + 1))  # the kept drug stays
    assert audit["f1_gain_bound"] == pytest.approx(2 * n / (2 * n + 1) - 2 * n / (2 * n + 2))
    # the pair breaks nothing for a patient without a condition that avoids it
    avoiding = {truth.conditions.index(c) for c, a, b in truth.rules if (a, b) == (kept, dropped)}
    other = next(r for r in range(len(truth.hard)) if not avoiding & set(truth.record_conditions[r].tolist()))
    assert planted_audit(truth, [f"R{other:06d}"], [[kept, dropped]])["rule_violating"] == 0.0


def test_a_contraindicated_drug_is_counted_and_removed(generated):
    _, truth = generated
    cond, drugs = next(iter(truth.contraindications.items()))
    row = _record_with(truth, cond, set(drugs))
    audit = planted_audit(truth, [f"R{row:06d}"], [_true_names(truth, row) + [drugs[0].upper()]])
    assert audit["contraindicated"] == 1.0 and audit["rule_violating"] == 0.0
    assert audit["f1"] < 1.0 and audit["f1_repaired"] == pytest.approx(1.0)


def test_an_avoided_antagonistic_pair_counts_only_for_patients_whose_doctors_avoid_it():
    _, _, truth = synth.generate_with_truth(**ARGS, knobs=synth.SynthKnobs(antagonism_tolerance=1.0))
    a, b = (truth.drug_names[i] for i in truth.antagonism[0])
    avoider = truth.antagonism_avoidance > 0.5
    rows = {flag: next(r for r in range(len(truth.hard)) if avoider[r] == flag and not truth.hard[r]
                       and not {a, b} & set(_true_names(truth, r))) for flag in (True, False)}
    for flag, row in rows.items():
        true = _true_names(truth, row)
        audit = planted_audit(truth, [f"R{row:06d}"], [true + [a, b]])
        assert audit["antagonism"] == float(flag) and audit["true_antagonism"] == 0.0
        # repaired: both drugs go for the patient whose doctor avoids the pair (neither is in
        # the true package); nothing changes for the others
        assert audit["f1_repaired"] == pytest.approx(1.0 if flag else audit["f1"])


def test_clash_records_are_split_by_whether_the_doctor_avoids_the_pair():
    knobs = synth.SynthKnobs(antagonism_tolerance=1.0, bundle_clash=1.0, second_core_prob=1.0, second_condition=0.6)
    _, _, truth = synth.generate_with_truth(**ARGS, knobs=knobs)
    cond = {c: i for i, c in enumerate(truth.conditions)}
    pairs = {frozenset((cond[c1], cond[c2])): (a, b) for c1, c2, a, b in truth.clashes}
    careful = truth.antagonism_avoidance > 0.5
    rows = [r for r in range(len(truth.hard)) if frozenset(truth.record_conditions[r].tolist()) in pairs]
    assert any(careful[rows]) and not all(careful[rows])
    picks = [_true_names(truth, r) + list(pairs[frozenset(truth.record_conditions[r].tolist())]) for r in rows]
    audit = planted_audit(truth, [f"R{r:06d}" for r in rows], picks)
    c, t = audit["clash_careful"], audit["clash_tolerant"]
    assert (c["n"], t["n"]) == (careful[rows].sum(), (~careful[rows]).sum())
    assert c["pick"] == t["pick"] == 1.0  # every pick holds the clashing pair
    assert c["true"] < 0.3 * t["true"]  # the careful doctors avoid it, the tolerant ones often do not
    assert audit["antagonism"] == pytest.approx(c["n"] / len(rows))  # only the careful patients' picks count
    # the default data plants no clashes, so it has no clash records
    _, _, plain = synth.generate_with_truth(**ARGS)
    none = planted_audit(plain, [f"R{r:06d}" for r in rows], [_true_names(plain, r) for r in rows])
    assert none["clash_careful"]["n"] == none["clash_tolerant"]["n"] == 0


def test_errors_name_the_record_and_the_field(generated):
    _, truth = generated
    with pytest.raises(ValueError, match=r"record 'R999999': record_id"):
        planted_audit(truth, ["R999999"], [["x"]])
    with pytest.raises(ValueError, match=r"record 'R000001': drugs holds 'Notadrug'"):
        planted_audit(truth, ["R000001"], [["Notadrug"]])
    with pytest.raises(ValueError, match="2 record ids but 1 picks"):
        planted_audit(truth, ["R000001", "R000002"], [[]])


def test_dpr_planted_reads_predictions_and_checks_the_emr_is_the_configs(tmp_path, generated, dpr_stdout):
    emr, truth = generated
    synth.write(emr, synth.generate(**ARGS)[1], str(tmp_path / "data"))
    rows = list(range(0, emr.num_rows, 7))
    preds = pa.table({"record_id": [f"R{r:06d}" for r in rows] * 2,
                      "model": ["truth"] * len(rows) + ["empty"] * len(rows),
                      "drugs": [_true_names(truth, r) for r in rows] + [[] for _ in rows]})
    pq.write_table(preds, tmp_path / "predictions.parquet")
    cfg = tmp_path / "synth.yaml"
    cfg.write_text(f"seed: {ARGS['seed']}\nsynth:\n  drugs: {ARGS['drugs']}\n  conditions: 16\n  mean_package: 10\n")
    args = ["planted", "--config", str(cfg), "--emr", str(tmp_path / "data" / "emr"),
            "--predictions", str(tmp_path / "predictions.parquet")]
    assert main([*args, "--out", str(tmp_path / "audit.json")]) == 0
    out = dpr_stdout()
    assert "| predictions | model | records |" in out and "| truth | 86 |" in out
    got = json.loads((tmp_path / "audit.json").read_text())[str(tmp_path / "predictions.parquet")]
    assert got["truth"]["f1"] == pytest.approx(1.0) and got["empty"]["f1"] == 0.0
    assert regenerate_truth(str(tmp_path / "data" / "emr"), ARGS["drugs"], ARGS["seed"], 16, 10).rules == truth.rules
    # another seed's truth does not belong to this EMR: refused, naming the first record that differs
    assert main([*args, "--seed", "4"]) == 2
    assert main([*args, "--set", "synth.antagonism_tolerance=1.0"]) == 2  # the knob reaches the generator
    with pytest.raises(ValueError, match=r"is not what dpr synth writes with seed 4.*record R0+ differs"):
        regenerate_truth(str(tmp_path / "data" / "emr"), ARGS["drugs"], 4, 16, 10)
