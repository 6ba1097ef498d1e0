"""Tests of dpr_dist.models.variants: which model a config names."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dpr_dist.models.dpr import DPR
from dpr_dist.models.ncf import NCF
from dpr_dist.models.variants import VARIANTS, build_model

ALL = sorted(VARIANTS)


def test_build_model(small_cfg, toy):
    for name in ALL:
        m = build_model(replace(small_cfg, name=name), toy.num_drugs, toy.num_doc_words, toy.num_chars)
        assert isinstance(m, DPR) and m.variant.name == name
    assert isinstance(build_model(replace(small_cfg, name="ncf"), 5, 4, 3), NCF)
    with pytest.raises(ValueError, match="baselines"):
        build_model(replace(small_cfg, name="nope"), 5, 4, 3)
    with pytest.raises(ValueError, match="gnn_layers must be >= 1"):
        build_model(replace(small_cfg, name="wg", gnn_layers=0), 5, 4, 3)
