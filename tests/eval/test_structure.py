import numpy as np
import pytest

from dpr_dist.eval.structure import package_structure

# patients A (two stays), B, C; drug ids 0-6
PIDS = ["A", "A", "B", "C"]
PACKS = [[0, 1, 2], [0, 1], [0, 1, 3], [4, 5, 6]]


def test_against_a_hand_count():
    s = package_structure(PIDS, PACKS, pool_patients=100, repeats=3)
    assert s["pools"] == 1 and s["records"] == 4 and s["k"] == 3  # sizes 3, 2, 3, 3: K = round(2.75)
    # F1 to other patients' stays: a1-b1 2/3, a2-b1 4/5, everything with C 0 (A's own stays never count)
    assert s["random_other_f1"] == pytest.approx((1 / 3 + 0.4 + (2 / 3 + 0.8) / 3 + 0) / 4)
    assert s["best_other_f1"] == pytest.approx((2 / 3 + 0.8 + 0.8 + 0) / 4)
    # top-3 of the other patients' drugs (ties to the lower id): A {0,1,3}; B and C {0,1,2}
    assert s["popularity_f1"] == pytest.approx((2 / 3 + 0.8 + 2 / 3 + 0) / 4)
    assert s["best_over_popularity"] == pytest.approx(s["best_other_f1"] / s["popularity_f1"])


def test_empty_packages_are_left_out():
    base = package_structure(PIDS, PACKS)
    with_empty = package_structure(PIDS + ["D"], PACKS + [[]])
    assert with_empty == base


def test_pools_draw_the_asked_number_of_patients_and_are_seeded():
    rng = np.random.default_rng(0)
    pids = [f"P{i // 2}" for i in range(400)]  # 200 patients, two stays each
    packs = [rng.choice(30, 5, replace=False) for _ in range(400)]
    a = package_structure(pids, packs, pool_patients=50, repeats=4, seed=1)
    assert a["pools"] == 4 and a["records"] == 100
    assert a == package_structure(pids, packs, pool_patients=50, repeats=4, seed=1)
    assert a != package_structure(pids, packs, pool_patients=50, repeats=4, seed=2)


def test_identical_treatment_gives_a_perfect_best_pick():
    s = package_structure(["A", "B", "C"], [[1, 2], [1, 2], [1, 2]])
    assert s["best_other_f1"] == s["random_other_f1"] == s["popularity_f1"] == 1.0


def test_errors():
    with pytest.raises(ValueError, match="2 patient ids for 4 packages"):
        package_structure(["A", "B"], PACKS)
    with pytest.raises(ValueError, match="two patients"):
        package_structure(["A", "A"], [[1], [2]])
    with pytest.raises(ValueError, match="pool_patients"):
        package_structure(PIDS, PACKS, pool_patients=1)
