"""A worker's checkpoint written and read back (dpr_dist/train/checkpoint.py)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dpr_dist.train.averaging import RAW_WEIGHTS, WeightAverage
from dpr_dist.train.checkpoint import TrainState, load_checkpoint, save_checkpoint


def trained(seed: int = 0, ema: bool = False):
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    optim = torch.optim.Adam(model.parameters(), lr=0.1)
    average = WeightAverage(model, 0.5) if ema else None
    for i in range(3):
        optim.zero_grad()
        model(torch.arange(3.0) + i).pow(2).sum().backward()
        optim.step()
        if average is not None:
            average.update()
    return model, optim, average


@pytest.mark.parametrize("ema", [False, True])
def test_a_checkpoint_reads_back_what_was_written(tmp_path, ema):
    model, optim, average = trained(ema=ema)
    state = TrainState(next_epoch=3, best_val_f1=0.41, best_epoch=1, history=[{"epoch": 0, "val_f1": 0.4}],
                       averaged_steps=3 if ema else 0)
    save_checkpoint(tmp_path, model, optim, state, average)
    assert (tmp_path / RAW_WEIGHTS).exists() == ema
    assert json.loads((tmp_path / "state.json").read_text())["best_epoch"] == 1  # what stored.py reads

    fresh, _, _ = trained(seed=1)
    got_state, got_optim, averaged = load_checkpoint(tmp_path, fresh)
    assert got_state == state
    for key, value in model.state_dict().items():  # the raw weights go into the model
        torch.testing.assert_close(fresh.state_dict()[key], value)
    assert got_optim["state"][0]["step"] == optim.state_dict()["state"][0]["step"]
    if ema:
        torch.testing.assert_close(averaged["weight"], average.averaged().weight.detach())
        assert not torch.equal(averaged["weight"], model.weight.detach())
    else:
        assert averaged is None


def test_a_fresh_state_has_no_best_epoch():
    state = TrainState()
    assert (state.next_epoch, state.best_epoch, state.history, state.averaged_steps) == (0, -1, [], 0)
    assert state.best_val_f1 < 0  # any validation F1 is better
