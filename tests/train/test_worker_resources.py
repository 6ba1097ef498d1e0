"""``train.worker_resources``: custom Ray resources every training worker reserves.

Placement on a real multi-node cluster is tested end to end in
``tests/e2e/test_multinode.py``; these tests cover reading and checking the setting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dpr_dist.config import TrainConfig, config_from_dict, load_config, save_config

REPO = Path(__file__).resolve().parents[2]


def test_default_is_no_extra_resources():
    assert TrainConfig().worker_resources == {}
    assert load_config(REPO / "configs" / "tiny.yaml").train.worker_resources == {}


def test_set_from_the_command_line_and_yaml(tmp_path):
    cfg = load_config(REPO / "configs" / "tiny.yaml", ["train.worker_resources={dpr_trainer: 1, big_mem: 0.5}"])
    assert cfg.train.worker_resources == {"dpr_trainer": 1, "big_mem": 0.5}
    (tmp_path / "c.yaml").write_text("train:\n  worker_resources:\n    dpr_trainer: 2\n")
    assert load_config(tmp_path / "c.yaml").train.worker_resources == {"dpr_trainer": 2}


def test_round_trips_through_yaml_and_dict(tmp_path):
    cfg = load_config(None, ["train.worker_resources={dpr_trainer: 1}"])
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("value, message", [
    ("[dpr_trainer]", "must be a mapping"),
    ("{CPU: 2}", "other than CPU and GPU"),
    ("{GPU: 1}", "other than CPU and GPU"),
    ("{dpr_trainer: -1}", "must be a number >= 0"),
    ("{dpr_trainer: many}", "must be a number >= 0"),
    ("{dpr_trainer: true}", "must be a number >= 0"),
])
def test_bad_values_are_refused_naming_the_field(value, message):
    with pytest.raises(ValueError, match="worker_resources") as err:
        load_config(None, [f"train.worker_resources={value}"])
    assert message in str(err.value)
