import re

import pytest

from dpr_dist.config import config_from_dict, load_config, save_config


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  gnn_layers: 2\ntrain:\n  epochs: 7\n")
    cfg = load_config(p, ["train.lr=0.01", "data.split=[0.7, 0.2, 0.1]", "train.use_gpu=true"])
    assert cfg.model.gnn_layers == 2 and cfg.train.epochs == 7 and cfg.train.lr == 0.01
    assert cfg.data.split == (0.7, 0.2, 0.1) and cfg.train.use_gpu is True
    save_config(cfg, tmp_path / "o.yaml")
    assert load_config(tmp_path / "o.yaml") == cfg
    assert config_from_dict(cfg.to_dict()) == cfg


def test_unknown_keys_and_bad_values_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="train.epoch"):
        load_config(None, ["train.epoch=3"])
    with pytest.raises(ValueError, match="train.epochs"):
        load_config(None, ["train.epochs=many"])
    p = tmp_path / "c.yaml"
    p.write_text("modle: {}\n")
    with pytest.raises(ValueError, match="modle"):
        load_config(p)


def test_synth_section_builds_the_generator_knobs():
    from dpr_dist.data.synth import SynthKnobs

    assert load_config(None).synth.knobs() == SynthKnobs()
    cfg = load_config(None, ["synth.bundle_clash=0.8", "synth.second_core_prob=0.9", "synth.second_condition=0.6",
                             "synth.antagonism_tolerance=1"])
    k = cfg.synth.knobs()
    assert (k.bundle_clash, k.second_core_prob, k.second_condition, k.antagonism_tolerance) == (0.8, 0.9, 0.6, 1.0)
    assert k.core_prob == SynthKnobs().core_prob  # the others keep their defaults


@pytest.mark.parametrize("key, default, good, bad", [
    ("parallel_runs", 1, 4, ("0", "-1", "two")),  # a positive integer
    ("rank_consensus", 0.0, 0.5, ("-0.1", "1.5")),  # a share
    ("patience", 0, 2, ("-1",)),  # a count of epochs
    ("ema_decay", 0.0, 0.99, ("1.0", "-0.5", "true")),  # a rate in [0, 1)
])
def test_train_settings_take_their_range(key, default, good, bad):
    assert getattr(load_config(None).train, key) == default
    assert getattr(load_config(None, [f"train.{key}={good}"]).train, key) == good
    for value in bad:
        with pytest.raises(ValueError, match=key):
            load_config(None, [f"train.{key}={value}"])


def test_aggregation_is_sum_or_mean():
    assert load_config(None).model.aggr == "sum"  # the paper's eqs. 12 and 19
    assert load_config(None, ["model.aggr=mean"]).model.aggr == "mean"
    with pytest.raises(ValueError, match="aggr='max' must be 'sum'"):
        load_config(None, ["model.aggr=max"])


@pytest.mark.parametrize("override, error", [
    ("train.epochs=1.5", "train.epochs: expected an integer, got 1.5"),
    ("train.epochs=true", "train.epochs: expected an integer, got True"),
    ("train.epochs=five", "train.epochs: expected an integer, got 'five'"),
    ("train.lr=true", "train.lr: expected a number, got True"),
    ("train.use_gpu=2", "train.use_gpu: expected a boolean, got 2"),
    ("train.use_gpu=maybe", "train.use_gpu: expected a boolean, got 'maybe'"),
])
def test_an_override_that_would_change_on_the_way_is_an_error(override, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        load_config(None, [override])


def test_overrides_that_fit_their_field_are_converted():
    cfg = load_config(None, ["train.epochs=2.0", "train.lr=1", "train.use_gpu=0", "train.use_gpu=on"])
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.use_gpu) == (2, 1.0, True)
    assert isinstance(cfg.train.epochs, int) and isinstance(cfg.train.lr, float)
