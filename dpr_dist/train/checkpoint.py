"""What a training worker keeps in each epoch's checkpoint, written and read in one place.

A checkpoint directory (``epoch_NNNN`` under the run's storage path) holds

* ``model.pt`` -- the run's weights: the raw model's, or with ``train.ema_decay`` their
  moving average (what is validated and what the model directory ships);
* ``raw.pt`` -- with ``train.ema_decay`` only: the optimiser's raw weights
  (:mod:`dpr_dist.train.averaging`);
* ``optim.pt`` -- the Adam state;
* ``state.json`` -- the progress, :class:`TrainState`.

:func:`dpr_dist.train.stored.checkpoint_state` reads ``state.json`` back without a worker
(the driver and the sweep report); :func:`dpr_dist.train.run.train` reads ``model.pt``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from dpr_dist.train.averaging import WeightAverage, read_weights


@dataclass
class TrainState:
    """Progress kept in every checkpoint (``state.json``).

    Attributes:
        next_epoch: The first epoch still to train (0-based).
        best_val_f1: The best validation F1 so far (-1 before the first epoch).
        best_epoch: Its epoch (0-based; -1 before the first epoch).
        history: One dict of metrics per trained epoch.
        averaged_steps: Optimiser steps in the weight average (``train.ema_decay``).
    """

    next_epoch: int = 0
    best_val_f1: float = -1.0
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)
    averaged_steps: int = 0


def save_checkpoint(directory: Path, model: nn.Module, optim: torch.optim.Optimizer, state: TrainState,
                    average: WeightAverage | None = None) -> None:
    """Write one checkpoint into ``directory`` (see module docs).

    Args:
        directory: An existing, empty directory.
        model: The raw model (not its DDP wrapper).
        optim: Its optimiser.
        state: The progress after the epoch.
        average: The weight average with ``train.ema_decay``; None otherwise.
    """
    if average is None:
        torch.save(model.state_dict(), directory / "model.pt")
    else:
        average.save(directory)  # model.pt = the average, raw.pt = the model's own weights
    torch.save(optim.state_dict(), directory / "optim.pt")
    (directory / "state.json").write_text(json.dumps(state.__dict__))


def load_checkpoint(directory: Path, model: nn.Module) -> tuple[TrainState, dict, dict | None]:
    """Read a checkpoint written by :func:`save_checkpoint`; load the raw weights into ``model``.

    Returns:
        ``(state, optimiser state dict, averaged weights or None)``; the averaged weights are
        None for a run without ``train.ema_decay``.
    """
    raw, averaged = read_weights(directory)
    model.load_state_dict(raw)
    optim = torch.load(directory / "optim.pt", map_location="cpu", weights_only=True)
    state = TrainState(**json.loads((directory / "state.json").read_text()))
    return state, optim, averaged
