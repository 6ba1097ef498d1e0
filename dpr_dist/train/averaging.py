"""An exponential moving average of a model's weights (``train.ema_decay``).

After every optimiser step the average moves towards the raw weights,

    avg <- decay * avg + (1 - decay) * theta        (the first step copies theta),

with PyTorch's own :class:`torch.optim.swa_utils.AveragedModel` and
:func:`~torch.optim.swa_utils.get_ema_multi_avg_fn`. The workers validate the average
and checkpoint it as the run's weights (``model.pt``, what the model directory ships),
while Adam keeps stepping the raw weights. Only parameters are averaged: buffers (fitted
item vectors of Package2vec and LDA, ``fitted`` flags) are copied from the raw model,
since averaging a flag or a fitted table means nothing.

A checkpoint of an averaged run holds both weight sets, ``model.pt`` (the average) and
``raw.pt`` (the optimiser's weights), and the number of averaged steps in ``state.json``,
so a run resumed from it continues exactly as the uninterrupted one.

Why: validation F1 of the package models moves by up to 0.006 from one epoch to the next on
``configs/bench.yaml``, and with ``train.patience`` a run stops at such a dip; averaging over
the last ~``1 / (1 - decay)`` steps smooths the weights the way Polyak averaging does
(``docs/training.md`` has the measurements).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

#: The raw (optimiser's) weights in the checkpoint of an averaged run.
RAW_WEIGHTS = "raw.pt"


class WeightAverage:
    """The moving average of ``model``'s parameters (see module docs).

    Args:
        model: The model the optimiser steps (not its DDP wrapper).
        decay: ``train.ema_decay`` in ``(0, 1)``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay {decay} must be in (0, 1)")
        self.model = model
        self.average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)

    @property
    def steps(self) -> int:
        """How many optimiser steps the average has taken in."""
        return int(self.average.n_averaged)

    def update(self) -> None:
        """Take the model's current parameters into the average (after ``optim.step()``)."""
        self.average.update_parameters(self.model)

    def averaged(self) -> nn.Module:
        """The averaged model, its buffers copied from the raw model; before the first update,
        the raw model itself (an average of nothing is not a model)."""
        if self.steps == 0:
            return self.model
        module = self.average.module
        with torch.no_grad():
            for mine, raw in zip(module.buffers(), self.model.buffers()):
                mine.copy_(raw)
        module.train(self.model.training)
        return module

    def save(self, directory: Path) -> None:
        """Write the average as ``model.pt`` and the raw weights as :data:`RAW_WEIGHTS`."""
        torch.save(self.averaged().state_dict(), Path(directory) / "model.pt")
        torch.save(self.model.state_dict(), Path(directory) / RAW_WEIGHTS)

    def restore(self, averaged: dict[str, torch.Tensor] | None, steps: int) -> None:
        """Continue the average of a checkpoint: its ``model.pt`` (``averaged``) after ``steps``
        averaged steps. ``averaged=None`` (a checkpoint of a run that did not average) starts
        a fresh average from the raw weights at the next step."""
        if averaged is None or steps <= 0:
            return
        self.average.module.load_state_dict(averaged)
        self.average.n_averaged.fill_(steps)


def read_weights(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """The raw weights of a checkpoint and its average (None when the run did not average)."""
    directory = Path(directory)
    weights = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
    if not (directory / RAW_WEIGHTS).exists():
        return weights, None
    return torch.load(directory / RAW_WEIGHTS, map_location="cpu", weights_only=True), weights
