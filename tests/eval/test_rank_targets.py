"""The ranking targets' predictability against a hand count on three patients."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpr_dist.eval.candidates import CandidateIndex
from dpr_dist.eval.rank_targets import target_predictability


def index() -> CandidateIndex:
    # three patients; each one's neighbourhood (k = 2) is the other two
    return CandidateIndex(np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), [[0, 1], [0, 2], [3]])


def test_target_predictability_matches_a_hand_count():
    got = target_predictability(index(), k=2, tau=0.5, consensus_temperatures=(0.2,))
    # patients 0 and 1: F1 0.5 and 0 -> targets softmax([1, 0]); patient 2: F1 0 and 0 -> uniform
    p = np.array([math.e, 1.0]) / (math.e + 1.0)
    h = float(-(p * np.log(p)).sum())
    assert got["patients"] == 3 and got["mean_candidates"] == 2.0
    assert got["target_entropy"] == pytest.approx((2 * h + math.log(2)) / 3)
    assert got["uniform_ce"] == pytest.approx(math.log(2))
    # the two candidates of every set have the same consensus (their F1 to each other): a uniform guess
    assert got["consensus_ce"] == {0.2: pytest.approx(math.log(2))}
    assert got["ceiling_f1"] == pytest.approx(1 / 3) and got["mean_candidate_f1"] == pytest.approx(1 / 6)
    assert got["target_entropy"] < got["uniform_ce"]


def test_every_takes_a_sample_of_the_patients():
    assert target_predictability(index(), k=2, every=2)["patients"] == 2  # rows 0 and 2
    with pytest.raises(ValueError, match="every"):
        target_predictability(index(), k=2, every=0)
