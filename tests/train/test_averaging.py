"""The weight average of ``train.ema_decay`` (dpr_dist/train/averaging.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dpr_dist.train.averaging import RAW_WEIGHTS, WeightAverage, read_weights


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 2)
        self.register_buffer("table", torch.zeros(2))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))


def step(model: Tiny, optim: torch.optim.Optimizer, i: int) -> None:
    x = torch.arange(3, dtype=torch.float32) + i
    optim.zero_grad()
    model.lin(x).pow(2).sum().backward()
    optim.step()


def test_average_follows_the_hand_computed_ema():
    model, decay = Tiny(), 0.9
    optim = torch.optim.SGD(model.parameters(), lr=0.01)
    average = WeightAverage(model, decay)
    assert average.averaged() is model  # nothing averaged yet: the raw model
    hand = None
    for i in range(4):
        step(model, optim, i)
        average.update()
        raw = model.lin.weight.detach().clone()
        hand = raw if hand is None else decay * hand + (1 - decay) * raw  # the first step copies
    assert average.steps == 4
    torch.testing.assert_close(average.averaged().lin.weight, hand)
    assert not torch.equal(average.averaged().lin.weight, model.lin.weight)


def test_buffers_are_copied_from_the_raw_model_not_averaged():
    model = Tiny()
    optim = torch.optim.SGD(model.parameters(), lr=0.01)
    average = WeightAverage(model, 0.5)
    step(model, optim, 0)
    average.update()
    model.table.fill_(3.0)
    model.fitted.fill_(True)
    step(model, optim, 1)
    average.update()  # a bool buffer in the average would fail here
    out = average.averaged()
    assert torch.equal(out.table, torch.full((2,), 3.0)) and bool(out.fitted)


def test_a_restored_average_continues_as_the_uninterrupted_one(tmp_path):
    a = Tiny()
    optim_a = torch.optim.SGD(a.parameters(), lr=0.01)
    avg_a = WeightAverage(a, 0.8)
    for i in range(2):
        step(a, optim_a, i)
        avg_a.update()
    avg_a.save(tmp_path)
    assert (tmp_path / "model.pt").is_file() and (tmp_path / RAW_WEIGHTS).is_file()

    b = Tiny()
    raw, averaged = read_weights(tmp_path)
    b.load_state_dict(raw)
    torch.testing.assert_close(b.lin.weight, a.lin.weight)
    optim_b = torch.optim.SGD(b.parameters(), lr=0.01)
    avg_b = WeightAverage(b, 0.8)
    avg_b.restore(averaged, avg_a.steps)
    for i in range(2, 4):
        step(a, optim_a, i)
        avg_a.update()
        step(b, optim_b, i)
        avg_b.update()
    assert avg_b.steps == avg_a.steps == 4
    torch.testing.assert_close(avg_b.averaged().lin.weight, avg_a.averaged().lin.weight)


def test_a_checkpoint_without_an_average_starts_one(tmp_path):
    model = Tiny()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    raw, averaged = read_weights(tmp_path)
    assert averaged is None and torch.equal(raw["lin.weight"], model.lin.weight)
    average = WeightAverage(model, 0.9)
    average.restore(averaged, steps=7)
    assert average.steps == 0


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_decay_must_be_inside_the_unit_interval(decay):
    with pytest.raises(ValueError, match="must be in"):
        WeightAverage(Tiny(), decay)
