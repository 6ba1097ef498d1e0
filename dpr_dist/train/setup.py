"""What a training worker starts from: its :class:`RunSpec`, the model it builds and how
that model is set up before the first step.

On a fresh start (no checkpoint yet) :func:`prepare_model` loads the pre-trained NCF's
encoder and drug embeddings into a package model (paper 4.1), runs the optional
interaction-type warm-up of DPR-AG (``model.type_warmup``) and, on rank 0, fits the
models with an unsupervised fit (Package2vec, LDA) on the training packages; DDP then
broadcasts rank 0's weights and buffers. A resumed run only re-attaches R's labelled
pairs (``model.type_targets: relation``); its weights come from the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
from torch import nn

from dpr_dist.config import Config
from dpr_dist.data.documents import NOTE_VOCAB_SIZE
from dpr_dist.eval.interaction_types import has_type_head
from dpr_dist.models.ncf import NCF
from dpr_dist.models.type_targets import set_type_pairs, warm_up_types
from dpr_dist.models.variants import build_model as build_named_model
from dpr_dist.runtime import seed_everything


@dataclass
class RunSpec:
    """What a worker gets (through ``train_loop_config``; large parts as object refs).

    Attributes:
        cfg: The configuration.
        kind: ``ncf``, a DPR variant or a package baseline (``nn``, ``package2vec``, ...).
        epochs: Epochs of this run.
        num_drugs, num_doc_words: Vocabulary sizes.
        val: Object ref of the :class:`ValidationData`.
        pretrained: Object ref of the pre-trained NCF state dict (package models).
        packages: Object ref of the training packages (a ``PackageCSR``) for models with
            ``fit_packages``; None otherwise.
        neighbourhood: Object ref of the training patients' candidate neighbourhoods (a
            :class:`~dpr_dist.train.neighbourhood.Neighbourhood`) for the ranking term and
            neighbourhood negatives; None: the paper's loss with global-batch negatives only.
        fail_once: Test hook: ``{"epoch", "step", "rank", "marker"}``; that rank exits
            the process at that step unless ``marker`` exists (created first), so the
            failure happens once.
    """

    cfg: Config
    kind: str
    epochs: int
    num_drugs: int
    num_doc_words: int
    val: Any
    pretrained: Any = None
    fail_once: dict | None = None
    packages: Any = None
    neighbourhood: Any = None


def build_model(spec: RunSpec) -> nn.Module:
    """The model named ``spec.kind`` (NCF, a DPR variant or a baseline; seeded, CPU).

    Raises:
        ValueError: on an unknown name (from :func:`dpr_dist.models.variants.build_model`).
    """
    seed_everything(spec.cfg.train.seed)
    cfg = replace(spec.cfg.model, name=spec.kind)
    return build_named_model(cfg, spec.num_drugs, spec.num_doc_words, NOTE_VOCAB_SIZE)


def is_trainable(model: nn.Module) -> bool:
    """Whether the trainer takes BPR steps on ``model`` (False for NN)."""
    return getattr(model, "trainable", True) is not False


def fit_packages(model: nn.Module, packages: Any, num_drugs: int, seed: int) -> bool:
    """Call ``model.fit_packages`` on the training packages when the model has it.

    Args:
        model: The model.
        packages: The training packages as a ``PackageCSR`` (or an object ref of one).
        num_drugs: ``M``.
        seed: ``train.seed``.

    Returns:
        Whether a fit ran.

    Raises:
        ValueError: when the model needs a fit but no packages were given.
    """
    fit = getattr(model, "fit_packages", None)
    if fit is None:
        return False
    if packages is None:
        raise ValueError(f"model {type(model).__name__} needs the training packages (fit_packages)")
    csr = resolve(packages)
    fit(np.split(np.asarray(csr.indices), np.asarray(csr.indptr)[1:-1]), num_drugs, seed)
    return True


def resolve(obj: Any) -> Any:
    """``ray.get(obj)`` for an object ref, ``obj`` itself otherwise."""
    import ray

    return ray.get(obj) if isinstance(obj, ray.ObjectRef) else obj


def prepare_model(model: nn.Module, spec: RunSpec, relation: Any, fresh: bool, rank: int,
                  say: Callable[[str], None]) -> None:
    """Set ``model`` up before its first step (see module docs).

    Args:
        model: The model :func:`build_model` made (with a checkpoint's weights when resumed).
        spec: The run.
        relation: The relation matrix ``R`` of the validation data (for
            ``model.type_targets: relation``).
        fresh: Whether the run starts at epoch 0 (no checkpoint).
        rank: This worker's rank; rank 0 fits and prints.
        say: Prints one progress line.
    """
    mc, tc = spec.cfg.model, spec.cfg.train
    if fresh and spec.pretrained is not None:
        pre = NCF(mc, spec.num_drugs, spec.num_doc_words, NOTE_VOCAB_SIZE)
        pre.load_state_dict(resolve(spec.pretrained))
        model.load_pretrained(pre)  # paper 4.1: encoder and drug embeddings from NCF
    if has_type_head(model) and mc.type_targets == "relation":
        n = set_type_pairs(model, relation)  # eq. 21 over the pairs of R (models/type_targets.py)
        if rank == 0 and fresh:
            say(f"[{spec.kind}] interaction-type loss over the {n} labelled pairs of R")
        if fresh and mc.type_warmup > 0:  # every rank alike (DDP syncs anyway)
            before, after = warm_up_types(model, mc.type_warmup, tc.lr)
            if rank == 0:
                say(f"[{spec.kind}] type warm-up: {mc.type_warmup} steps, type loss {before:.4f} -> {after:.4f}")
    if fresh and rank == 0 and fit_packages(model, spec.packages, spec.num_drugs, tc.seed):
        say(f"[{spec.kind}] fitted on the training packages")  # DDP broadcasts the buffers
