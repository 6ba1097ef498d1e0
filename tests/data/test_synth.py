"""The synthetic EMR generator: the contract, determinism, and the planted structure."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dpr_dist.data import synth
from dpr_dist.data.schema import DDI_LABELS, DDI_SCHEMA, EMR_SCHEMA


def _base(name: str) -> str:
    """Bare drug name of a prescription string (the generator's names are one word)."""
    return name.split()[0].lower()


@pytest.fixture(scope="module")
def data():
    emr, ddi, truth = synth.generate_with_truth(records=3000, drugs=300, seed=0, mean_package=10)
    sizes = np.diff(truth.package_offsets)
    rec = np.repeat(np.arange(len(sizes)), sizes)
    x = np.zeros((len(sizes), len(truth.drug_names)), np.float32)
    x[rec, truth.package_drugs] = 1.0
    member = (truth.record_conditions[:, :, None] == np.arange(len(truth.conditions))).any(1)
    ids = {n: i for i, n in enumerate(truth.drug_names)}
    bundles = [np.array([ids[n] for n in b]) for b in truth.bundles]
    return {"emr": emr, "ddi": ddi, "truth": truth, "x": x, "co": x.T @ x, "member": member, "ids": ids,
            "bundles": bundles}


def _lift(d, pairs: np.ndarray) -> float:
    """Observed / expected (independence) co-occurrence, summed over unordered ``pairs``."""
    x, co = d["x"], d["co"]
    count = x.sum(0)
    obs = co[pairs[:, 0], pairs[:, 1]].sum()
    exp = (count[pairs[:, 0]] * count[pairs[:, 1]]).sum() / len(x)
    return float(obs / exp)


def _pairs(d, label: str) -> np.ndarray:
    ddi, ids = d["ddi"], d["ids"]
    rows = ddi.filter(pc.equal(ddi["label"], label))
    a = np.array([ids[n] for n in rows["drug_a"].to_pylist()])
    b = np.array([ids[n] for n in rows["drug_b"].to_pylist()])
    return np.unique(np.sort(np.stack([a, b], 1), 1), axis=0)


def _abnormal_labs(emr: pa.Table) -> np.ndarray:
    """``[R]`` number of lab values outside their reference range."""
    labs = emr["labs"].combine_chunks()
    flat = pc.list_flatten(labs)
    value, low, high = (flat.field(k).to_numpy() for k in ("value", "ref_low", "ref_high"))
    rows = pc.list_parent_indices(labs).to_numpy()
    return np.bincount(rows, weights=(value > high) | (value < low), minlength=emr.num_rows)


def _whole(x: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """``[G]`` P(all drugs of the group | any drug of it) over the packages ``x``, for groups
    seen in at least 20 packages (others NaN)."""
    out = []
    for g in groups:
        any_ = (x[:, g] > 0).any(1).sum()
        out.append((x[:, g] > 0).all(1).sum() / any_ if any_ >= 20 else np.nan)
    return np.array(out)


def test_schema_and_values_follow_the_contract(data):
    emr, ddi = data["emr"], data["ddi"]
    assert emr.schema.equals(EMR_SCHEMA) and ddi.schema.equals(DDI_SCHEMA)
    assert emr.num_rows == 3000
    assert set(emr["gender"].to_pylist()) <= {"F", "M", "unknown"}
    age = emr["age"].to_numpy()
    assert age.min() >= 0 and age.max() <= 120
    assert emr["note"].null_count == 0 and min(len(t) for t in emr["note"].to_pylist()) > 20
    assert 0 < emr["insurance"].null_count < 0.05 * emr.num_rows
    labs = pc.list_flatten(emr["labs"].combine_chunks())
    flag = labs.field("flag")
    assert set(pc.unique(flag).to_pylist()) == {None, "normal", "high", "low", "abnormal"}
    assert 0.3 < flag.null_count / len(flag) < 0.6  # the level must often come from the range
    value, low, high = (labs.field(k).to_numpy() for k in ("value", "ref_low", "ref_high"))
    f = np.array(flag.to_pylist(), object)
    assert (low <= high).all()
    assert (value[f == "high"] > high[f == "high"]).all() and (value[f == "low"] < low[f == "low"]).all()
    normal = f == "normal"
    assert ((value[normal] >= low[normal]) & (value[normal] <= high[normal])).all()
    assert ((value[f == "abnormal"] > high[f == "abnormal"]) | (value[f == "abnormal"] < low[f == "abnormal"])).all()
    labels = ddi["label"].to_pylist()
    assert set(labels) <= {*DDI_LABELS, None}
    assert 0.02 < labels.count(None) / len(labels) < 0.09
    for a, b, lab, text in zip(*(ddi[k].to_pylist() for k in ("drug_a", "drug_b", "label", "description"))):
        if lab == "synergism":
            assert text.startswith(f"{a} may increase the ") and text.endswith(f" activities of {b}.")
        elif lab == "antagonism":
            assert text.startswith(f"{a} may decrease the ") and text.endswith(f" activities of {b}.")
        elif lab == "none":
            assert text == f"No interaction is known between {a} and {b}."
        else:
            assert a in text and b in text


def test_deterministic_given_the_seed():
    a = synth.generate(records=300, drugs=60, seed=7, mean_package=6)
    b = synth.generate(records=300, drugs=60, seed=7, mean_package=6)
    c = synth.generate(records=300, drugs=60, seed=8, mean_package=6)
    assert a[0].equals(b[0]) and a[1].equals(b[1])
    assert not a[0].equals(c[0]) and not a[1].equals(c[1])


def test_records_patients_and_packages(data):
    emr, truth = data["emr"], data["truth"]
    ids = emr["record_id"].to_pylist()
    assert len(set(ids)) == len(ids)
    assert 1.15 < len(ids) / len(set(emr["patient_id"].to_pylist())) < 1.5
    drugs = emr["drugs"].to_pylist()
    assert min(len({_base(n) for n in p}) for p in drugs) >= 2
    assert all(len({_base(n) for n in p}) == len(p) for p in drugs)  # one spelling per drug per stay
    sizes = np.array([len(p) for p in drugs])
    assert 8.0 < sizes.mean() < 12.0 and sizes.max() > sizes.mean() + 5
    # the truth lists the same drugs in the same order
    catalog = [n.lower() for n in truth.drug_names]
    assert [_base(n) for n in drugs[5]] == [catalog[i] for i in truth.package_drugs[truth.package_offsets[5]:
                                                                                    truth.package_offsets[6]]]
    times = emr["admit_time"].to_numpy()
    assert (np.diff(times.astype(np.int64)) >= 0).all()


def test_names_need_normalization_to_align(data):
    emr, ddi = data["emr"], data["ddi"]
    flat = pc.list_flatten(emr["drugs"]).to_pylist()
    ddi_names = set(ddi["drug_a"].to_pylist()) | set(ddi["drug_b"].to_pylist())
    assert all(" " not in n for n in ddi_names)
    assert any(" mg " in n or n.endswith(" mg") for n in flat)
    salted = [n for n in flat if set(n.split()[1:]) & set(synth._SALTS)]
    assert salted and all(n.split()[0] in ddi_names for n in salted)  # salts only on known bases
    assert any(n.islower() for n in flat) and any(n.isupper() for n in flat)
    raw_hits = len({n for n in flat} & ddi_names)
    emr_drugs = {_base(n) for n in flat}
    aligned = emr_drugs & {n.lower() for n in ddi_names}
    assert len(emr_drugs) == 300
    assert 0.35 < len(aligned) / len(emr_drugs) < 0.45  # paper: 565 of 1,428
    assert raw_hits < len(aligned) * len({n for n in flat}) / len(emr_drugs)  # names must be normalized


def test_interaction_table_proportions_and_direction(data):
    ddi = data["ddi"]
    labels = [x for x in ddi["label"].to_pylist() if x is not None]
    n = {k: labels.count(k) for k in DDI_LABELS}
    assert n["synergism"] > 2.5 * n["antagonism"] > n["none"] > 0  # paper 22,986 : 6,389 : 2,560
    rows = set(zip(ddi["drug_a"].to_pylist(), ddi["drug_b"].to_pylist()))
    assert len(rows) == ddi.num_rows
    syn = ddi.filter(pc.equal(ddi["label"], "synergism"))
    two_way = [(b, a) in rows for a, b in zip(syn["drug_a"].to_pylist(), syn["drug_b"].to_pylist())]
    assert 0.1 < np.mean(two_way) < 0.8
    co = data["co"]
    all_pairs = np.concatenate([_pairs(data, k) for k in DDI_LABELS])
    assert (co[all_pairs[:, 0], all_pairs[:, 1]] == 0).any()  # known pairs never co-prescribed


def test_synergistic_pairs_cooccur_antagonistic_pairs_avoided(data):
    assert _lift(data, _pairs(data, "synergism")) > 1.5
    assert _lift(data, _pairs(data, "antagonism")) < 0.3
    assert 0.6 < _lift(data, _pairs(data, "none")) < 1.4
    ids = data["ids"]
    core = np.array([(ids[a], ids[b]) for reg in data["truth"].regimens.values() for a in reg for b in reg
                     if ids[a] < ids[b]])
    assert _lift(data, core) > 3.0


def test_condition_dependent_pairs_and_contraindications(data):
    truth, x, member, ids = data["truth"], data["x"], data["member"], data["ids"]
    live = ~truth.hard
    conditions = list(truth.conditions)
    kidney = [r for r in truth.rules if r[0] == "kidney disease"][0]
    assert set(kidney[1:]) <= set(truth.regimens["infection"])  # cefuroxime + gentamicin
    hit_with = n_with = hit_wo = n_wo = 0
    for cond, keep, drop in truth.rules:
        c = conditions.index(cond)
        both = (x[:, ids[keep]] > 0) & (x[:, ids[drop]] > 0)
        hit_with += both[member[:, c] & live].sum()
        n_with += (member[:, c] & live).sum()
        hit_wo += both[~member[:, c]].sum()
        n_wo += (~member[:, c]).sum()
    assert hit_wo / n_wo > 0.05
    assert hit_with / n_with < 0.2 * hit_wo / n_wo
    for cond, drugs in truth.contraindications.items():
        c = conditions.index(cond)
        for name in drugs:
            col = x[:, ids[name]] > 0
            assert col[member[:, c] & live].mean() < 0.25 * col[~member[:, c]].mean() + 0.01, (cond, name)


def _antagonistic_pairs_held(truth) -> np.ndarray:
    """``[R]`` number of the generator's antagonistic pairs inside each package."""
    d = len(truth.drug_names)
    ant = np.zeros((d, d), bool)
    ant[truth.antagonism[:, 0], truth.antagonism[:, 1]] = True
    ant |= ant.T
    off, ids = truth.package_offsets, truth.package_drugs
    return np.array([ant[np.ix_(p, p)].sum() // 2 for p in (ids[off[i]:off[i + 1]] for i in range(len(off) - 1))])


def test_antagonism_tolerance_makes_avoidance_depend_on_the_patient(data):
    base = data["truth"]
    # the default treats every patient alike and leaves the data as it was
    assert np.all(base.antagonism_avoidance == synth.SynthKnobs().avoid_antagonism)
    emr0, _, _ = synth.generate_with_truth(records=3000, drugs=300, seed=0, mean_package=10,
                                           knobs=synth.SynthKnobs(antagonism_tolerance=0.0))
    assert emr0.equals(data["emr"])
    emr, _, truth = synth.generate_with_truth(records=3000, drugs=300, seed=0, mean_package=10,
                                              knobs=synth.SynthKnobs(antagonism_tolerance=1.0))
    age = np.array(emr["age"].to_pylist())
    vulnerable = truth.antagonism_avoidance > 0.5
    assert np.all(vulnerable[age >= 65])
    assert np.all(truth.antagonism_avoidance[~vulnerable] == 0.0)
    live = ~truth.hard
    held, held0 = _antagonistic_pairs_held(truth), _antagonistic_pairs_held(base)
    # tolerant doctors co-prescribe antagonistic pairs; for the vulnerable they stay as rare as before
    assert held[live & ~vulnerable].mean() > 5 * max(held0[live].mean(), 0.01)
    assert held[live & vulnerable].mean() < 0.3 * held[live & ~vulnerable].mean()
    with pytest.raises(ValueError, match="antagonism_tolerance"):
        synth.generate(10, 20, knobs=synth.SynthKnobs(antagonism_tolerance=1.5))


def test_conditions_show_in_demographics_labs_and_notes(data):
    emr, truth, member = data["emr"], data["truth"], data["member"]
    c = list(truth.conditions)
    gender = np.array(emr["gender"].to_pylist())
    age = emr["age"].to_numpy()
    preg, infant, kidney = (member[:, c.index(k)] for k in ("pregnancy", "infant", "kidney disease"))
    assert (gender[preg] == "F").all() and age[preg].min() >= 18 and age[preg].max() <= 44
    assert age[infant].max() <= 2 and age[~infant].mean() > 30
    labs = emr["labs"].to_pylist()
    high_creat = np.array([any(lab["name"] == "creatinine" and lab["value"] > lab["ref_high"] for lab in ls)
                           for ls in labs])
    assert high_creat[kidney].mean() > 0.6 and high_creat[~kidney].mean() < 0.15
    notes = [t.lower() for t in emr["note"].to_pylist()]
    assert not any(name in t for name in truth.conditions for t in notes)  # never the latent label
    oliguria = np.array(["oliguria" in t for t in notes])
    assert oliguria[kidney].mean() > 0.4 and oliguria[~kidney].mean() < 0.1


def test_package_size_follows_the_visible_severity(data):
    emr, truth = data["emr"], data["truth"]
    live = ~truth.hard
    sizes = np.diff(truth.package_offsets).astype(np.float64)
    assert 0.5 < sizes[live].std() / sizes[live].mean() < 0.75  # real EMR: a wide spread
    sev = truth.severity
    assert sev.shape == (emr.num_rows,) and abs(sev.mean()) < 0.05 and 0.9 < sev.std() < 1.1
    assert np.corrcoef(sizes[live], sev[live])[0, 1] > 0.6
    # visible, noisily: abnormal labs, surgery, note words, age
    assert np.corrcoef(sizes[live], _abnormal_labs(emr)[live])[0, 1] > 0.3
    surgery = emr["surgery"].to_numpy(zero_copy_only=False)
    assert sizes[surgery & live].mean() > 1.3 * sizes[~surgery & live].mean()
    notes = emr["note"].to_pylist()
    level = np.array([[w in t for w in synth._SEVERITY_WORDS] for t in notes])
    assert (level.sum(1) == 1).all()
    means = [sizes[level[:, k] & live].mean() for k in range(4)]  # stable, fair, serious, critical
    assert means == sorted(means) and means[3] > 2.5 * means[0]
    severe = np.array(["severe " in t for t in notes])
    assert 0.03 < severe.mean() < 0.3 and sev[severe].mean() > sev[~severe].mean() + 1.0
    age = emr["age"].to_numpy()
    assert sev[age >= 65].mean() > sev[(age >= 18) & (age < 65)].mean() + 0.2


def test_bundles_are_prescribed_whole(data):
    truth, bundles = data["truth"], data["bundles"]
    x = data["x"][~truth.hard]
    flat = np.concatenate(bundles)
    assert len(set(flat.tolist())) == len(flat)  # disjoint
    assert all(2 <= len(b) <= 6 for b in bundles) and len(bundles) > len(truth.conditions)
    whole = _whole(x, bundles)
    assert np.isfinite(whole).mean() > 0.8
    assert np.nanmean(whole) > 0.75 and np.nanmin(whole) > 0.5
    # control: groups of the same sizes of drugs as frequent, outside the bundles
    rng = np.random.default_rng(0)
    others = np.setdiff1d(np.flatnonzero(x.mean(0) > 0.02), flat)
    assert len(others) >= 6
    control = _whole(x, [rng.choice(others, len(b), replace=False) for b in bundles])
    assert np.nanmean(control) < 0.2
    # packages are mostly whole bundles, more of them for more severe stays
    assert x[:, flat].sum() / x.sum() > 0.5
    n_whole = sum((x[:, b] > 0).all(1).astype(int) for b in bundles)
    assert np.corrcoef(n_whole, truth.severity[~truth.hard])[0, 1] > 0.3
    # each condition: its first-line bundle first (its regimen), surgery bundles apart
    for cond, ids in truth.condition_bundles.items():
        assert truth.bundles[ids[0]] == truth.regimens[cond] and len(set(ids)) == len(ids)
        assert not set(ids) & set(truth.surgery_bundles)
    assert truth.surgery_bundles


def test_bundles_are_built_around_synergistic_pairs(data):
    ddi, truth, ids, bundles = data["ddi"], data["truth"], data["ids"], data["bundles"]
    labels: dict[frozenset, set] = {}
    for a, b, lab in zip(*(ddi[k].to_pylist() for k in ("drug_a", "drug_b", "label"))):
        if lab is not None:
            labels.setdefault(frozenset((ids[a], ids[b])), set()).add(lab)
    pairs = [frozenset(p) for b in bundles for p in combinations(b[truth.aligned[b]].tolist(), 2)]
    assert all(truth.aligned[b].sum() >= 2 for b in bundles)
    assert all(labels.get(p, {"synergism"}) == {"synergism"} for p in pairs)
    assert np.mean([p in labels for p in pairs]) > 0.85  # the rest have a null label
    # no antagonistic pair inside a bundle, nor among the bundles of one condition
    bundle_of = np.full(len(truth.drug_names), -1)
    for k, b in enumerate(bundles):
        bundle_of[b] = k
    ant = bundle_of[_pairs(data, "antagonism")]
    assert len(ant) and not ((ant[:, 0] >= 0) & (ant[:, 0] == ant[:, 1])).any()
    for listed in truth.condition_bundles.values():
        assert not (np.isin(ant[:, 0], listed) & np.isin(ant[:, 1], listed)).any()
    assert (ant >= 0).all(1).any()  # bundles of different conditions may clash (comorbidity)


@pytest.mark.parametrize("records, drugs, mean_package", [(2000, 1428, 18.0), (1500, 60, 6.0)])
def test_mean_package_is_kept_with_a_wide_spread(records, drugs, mean_package):
    _, _, truth = synth.generate_with_truth(records, drugs, seed=1, mean_package=mean_package, notes=False)
    sizes = np.diff(truth.package_offsets)
    assert abs(sizes.mean() - mean_package) < 0.05 * mean_package
    assert 0.45 < sizes.std() / sizes.mean() < 0.75
    assert np.percentile(sizes, 95) > 2 * np.percentile(sizes, 50) > 2 * np.percentile(sizes, 5)


def test_small_catalogs_more_conditions_and_no_notes():
    emr, ddi = synth.generate(records=50, drugs=20)
    sizes = pc.list_value_length(emr["drugs"]).to_numpy()
    assert emr.num_rows == 50 and sizes.min() >= 2 and sizes.max() <= 20 and ddi.num_rows > 0
    emr, _, truth = synth.generate_with_truth(records=200, drugs=80, conditions=20, notes=False)
    assert emr["note"].null_count == 200
    assert len(truth.conditions) == 20 and truth.record_conditions.max() <= 19


@pytest.mark.parametrize("kwargs, field", [
    ({"records": 0, "drugs": 20}, "records"),
    ({"records": 10, "drugs": 3}, "drugs"),
    ({"records": 10, "drugs": 20, "conditions": 0}, "conditions"),
    ({"records": 10, "drugs": 20, "mean_package": 1.0}, "mean_package"),
    ({"records": 2.5, "drugs": 20}, "records"),
])
def test_bad_arguments_name_the_argument(kwargs, field):
    with pytest.raises(ValueError, match=field):
        synth.generate(**kwargs)


def test_write_local_parts_and_summary(tmp_path):
    emr, ddi = synth.generate(records=250, drugs=40, seed=3, mean_package=6)
    out = tmp_path / "data"
    summary = synth.write(emr, ddi, str(out), rows_per_file=100)
    parts = sorted(p.name for p in (out / "emr").iterdir())
    assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert pa.concat_tables([pq.read_table(out / "emr" / p) for p in parts]).equals(emr)
    assert pq.read_table(out / "ddi.parquet").equals(ddi)
    assert summary["records"] == 250 and summary["emr_files"] == 3 and summary["ddi_rows"] == ddi.num_rows
    assert sum(summary["ddi_labels"].values()) == ddi.num_rows
    synth.write(emr.slice(0, 50), ddi, str(out), rows_per_file=100)  # a rewrite leaves no stale parts
    assert sorted(p.name for p in (out / "emr").iterdir()) == ["part-00000.parquet"]
    with pytest.raises(ValueError, match="emr"):
        synth.write(emr.drop_columns(["note"]), ddi, str(out))


def _holds_bundle(truth, r: int, bundle) -> bool:
    """The package of record ``r`` holds the bundle's drugs (one may be missing)."""
    ids = {n: i for i, n in enumerate(truth.drug_names)}
    drugs = {ids[n] for n in bundle}
    package = set(truth.package_drugs[truth.package_offsets[r]:truth.package_offsets[r + 1]].tolist())
    return len(drugs & package) >= len(drugs) - 1


def _holds_regimen(truth, r: int, condition: str) -> bool:
    """The package of record ``r`` holds the condition's first-line bundle (one drug may be missing)."""
    return _holds_bundle(truth, r, truth.regimens[condition])


def test_bundle_clash_switches_whole_bundles_by_patient(data):
    assert data["truth"].clashes == ()  # the default plants none
    knobs = synth.SynthKnobs(antagonism_tolerance=1.0, bundle_clash=1.0, second_core_prob=1.0, second_condition=0.6)
    _, _, truth = synth.generate_with_truth(records=3000, drugs=300, seed=0, mean_package=10, knobs=knobs)
    assert len(truth.clashes) >= 10
    ids = {n: i for i, n in enumerate(truth.drug_names)}
    ant = {tuple(sorted(p)) for p in truth.antagonism.tolist()}
    for c1, c2, a, b in truth.clashes:  # one drug of each first-line bundle, labelled antagonistic
        assert a in truth.regimens[c1] + truth.regimens[c2] and b in truth.regimens[c1] + truth.regimens[c2]
        assert {a, b} - set(truth.regimens[c1]) and {a, b} - set(truth.regimens[c2])
        assert tuple(sorted((ids[a], ids[b]))) in ant
    clash = {(c1, c2) for c1, c2, _, _ in truth.clashes} | {(c2, c1) for c1, c2, _, _ in truth.clashes}
    names = truth.conditions
    rc = truth.record_conditions
    hit = np.array([c2 >= 0 and (names[c1], names[c2]) in clash for c1, c2 in rc.tolist()]) & ~truth.hard
    vulnerable = truth.antagonism_avoidance > 0.5
    both = np.array([_holds_regimen(truth, r, names[rc[r, 0]]) and _holds_regimen(truth, r, names[rc[r, 1]])
                     if hit[r] else False for r in range(len(rc))])
    assert hit[vulnerable].sum() > 100 and hit[~vulnerable].sum() > 100
    # tolerant doctors give both first-line bundles; for the vulnerable the second one is replaced ...
    tolerant, careful = both[hit & ~vulnerable].mean(), both[hit & vulnerable].mean()
    assert tolerant > 0.2 and careful < 0.25 * tolerant, (tolerant, careful)
    # ... by the second condition's second-line bundle
    second = np.array([_holds_bundle(truth, r, truth.bundles[truth.condition_bundles[names[rc[r, 1]]][1]])
                       if hit[r] else False for r in range(len(rc))])
    assert second[hit & vulnerable].mean() > 1.3 * second[hit & ~vulnerable].mean()
    for name in ("bundle_clash", "second_core_prob"):
        with pytest.raises(ValueError, match=name):
            synth.generate(10, 20, knobs=synth.SynthKnobs(**{name: -0.1}))


def test_clash_knobs_work_on_catalogs_too_small_for_second_line_bundles():
    knobs = synth.SynthKnobs(antagonism_tolerance=1.0, bundle_clash=1.0, second_core_prob=1.0, second_condition=0.9)
    for drugs in (8, 12):  # one bundle per condition: no second-line bundle to bring
        emr, _ = synth.generate(200, drugs, seed=1, conditions=16, mean_package=4, knobs=knobs)
        assert emr.num_rows == 200 and min(pc.list_value_length(emr["drugs"]).to_pylist()) >= 2
