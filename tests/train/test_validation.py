"""Validation during training: the same picks as the test evaluation, split exactly by rank."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))  # the toy model directories
from toy_bundles import V, toy_bundle, toy_records  # noqa: E402

from dpr_dist.eval.evaluate import encode_records, evaluate_models  # noqa: E402
from dpr_dist.train.validation import ValidationData, validation_f1_sum  # noqa: E402


@pytest.mark.parametrize("kind", ["wg", "ag", "ncf"])
def test_validation_f1_is_the_evaluation_f1_and_splits_by_rank(kind):
    b = toy_bundle("wg" if kind == "ncf" else kind)
    val = toy_records(23, 1, "V")
    with torch.no_grad():
        cands = b.index.query(encode_records(b.ncf.encode, val, V), k=b.cfg.eval.neighbors)
    data = ValidationData(val, cands, int(b.info["top_k"]), b.relation, b.cooc)
    model = b.ncf if kind == "ncf" else b.model
    cpu = torch.device("cpu")
    total = validation_f1_sum(model, data, np.arange(23), kind, b.cfg, V, cpu)
    # each rank scores rows rank::world; the sums add up to the whole split's
    halves = [validation_f1_sum(model, data, np.arange(r, 23, 2), kind, b.cfg, V, cpu) for r in (0, 1)]
    assert sum(halves) == pytest.approx(total, abs=1e-9)
    # the procedure of the test evaluation: the same mean F1
    direct = evaluate_models(b, val, [kind])[0][kind]
    assert total / 23 == pytest.approx(direct["f1"], abs=1e-9)
    assert 0 < total < 23
    assert validation_f1_sum(model, data, np.arange(0), kind, b.cfg, V, cpu) == 0.0
