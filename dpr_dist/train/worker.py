"""The per-worker training function of the Ray Train runs (``TorchTrainer``).

Every rank runs :func:`train_loop`: it builds the model (NCF for pre-training, a DPR
variant or a package baseline otherwise, :func:`dpr_dist.models.variants.build_model`), resumes
from ``ray.train.get_checkpoint()`` when there is one (a restarted worker group or a re-run
with the same name); on a fresh start it loads the pre-trained NCF and, for models with an
unsupervised fit (Package2vec, LDA), rank 0 calls ``model.fit_packages(training packages,
num_drugs, train.seed)`` (:mod:`dpr_dist.train.setup`; DDP broadcasts the fitted buffers to
the other ranks when it wraps the model). It then wraps the model in DDP and, for each
remaining epoch,

1. iterates its shard of the training records (``get_dataset_shard("train")``, batches of
   ``train.batch_size // num_workers`` records, a seeded local shuffle per epoch);
2. per step collates the batch, all-gathers the global batch's packages (or drugs) and
   samples the negatives from it (:mod:`dpr_dist.train.negatives`), and takes one Adam
   step on BPR (+ the interaction-type CE for AG) + ``l2 * ||Theta||^2``; with a
   candidate neighbourhood (``train.rank_weight``, ``train.hard_negatives``,
   :mod:`dpr_dist.train.neighbourhood`) also the candidate-ranking term
   (:mod:`dpr_dist.models.ranking`) and / or neighbourhood negatives; with
   ``train.ema_decay`` it updates the weight average (:mod:`dpr_dist.train.averaging`),
   which is then what is validated and checkpointed;
3. validates on its slice of the validation split (candidate picking for package
   models, top-``K`` drugs for NCF) and all-reduces F1;
4. reports the same metrics on every rank, rank 0 attaching the checkpoint
   (:mod:`dpr_dist.train.checkpoint`).

A model with ``trainable = False`` (NN) takes no steps: its epochs only validate (and
:func:`dpr_dist.train.run.train` validates it on the driver, with no Ray Train run).

Randomness depends only on ``(train.seed, epoch, step, rank)``, so a run resumed at an
epoch boundary continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dpr_dist.models.layers import l2_penalty
from dpr_dist.models.ranking import CandidateRanking
from dpr_dist.train.averaging import WeightAverage
from dpr_dist.train.checkpoint import TrainState, load_checkpoint, save_checkpoint
from dpr_dist.train.collate import collate_packages, collate_patients, collate_positives, package_csr
from dpr_dist.train.negatives import (
    gather_drug_pool, gather_packages, negative_layout, sample_negative_drugs, sample_negative_packages)
from dpr_dist.train.setup import RunSpec, build_model, is_trainable, prepare_model, resolve
from dpr_dist.train.stored import stopped_early
from dpr_dist.train.validation import ValidationData, validation_f1_sum

__all__ = ["train_loop"]

log = logging.getLogger(__name__)


def _all_reduce(values: list[float], device: torch.device) -> list[float]:
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.cpu().tolist()


def _say(line: str) -> None:
    """One progress line on the worker's stdout (forwarded once to the driver by Ray)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _maybe_fail(spec: RunSpec, epoch: int, step: int, rank: int) -> None:
    f = spec.fail_once
    if f and (epoch, step, rank) == (f["epoch"], f["step"], f["rank"]) and not os.path.exists(f["marker"]):
        Path(f["marker"]).touch()
        log.warning("fault injection: rank %d exits at epoch %d step %d", rank, epoch, step)
        os._exit(1)


class _Runner:
    """One rank's training state and steps."""

    def __init__(self, spec: RunSpec, rank: int, world: int, device: torch.device) -> None:
        self.spec, self.rank, self.world, self.device = spec, rank, world, device
        self.tc = spec.cfg.train
        self.val: ValidationData = resolve(spec.val)
        self.hood = resolve(spec.neighbourhood) if spec.neighbourhood is not None else None
        if self.hood is not None:  # shared by a sweep's trials, each with its own threshold and targets
            self.hood = self.hood.at_threshold(spec.cfg.data.threshold).with_consensus(self.tc.rank_consensus)

    @property
    def ranks(self) -> bool:
        """Whether steps add the candidate-ranking term (a neighbourhood and a weight > 0)."""
        return self.hood is not None and self.tc.rank_weight > 0 and self.spec.kind != "ncf"

    # ------------------------------------------------------------------ steps
    def step(self, ddp: nn.Module, model: nn.Module, table, rng: np.random.Generator) -> dict[str, float]:
        """Loss of one local batch (not yet backpropagated) and its statistics."""
        k = self.tc.negative_ratio
        patients = collate_patients(table, self.spec.num_doc_words).to(self.device)
        if self.spec.kind == "ncf":
            pos, mask = collate_positives(table, self.spec.num_drugs)
            pool, sent = gather_drug_pool(pos[mask].numpy())
            neg = sample_negative_drugs(pos.numpy(), mask.numpy(), pool, self.spec.num_drugs, k, rng)
            loss = ddp(patients, pos.to(self.device), torch.from_numpy(neg).to(self.device), mask.to(self.device))
            stats = {"gather_bytes": float(sent)}
        else:
            own = collate_packages(table, self.spec.cfg.data.threshold, self.spec.num_drugs)
            glob = gather_packages(own, self.rank)
            neg = sample_negative_packages(glob.packages.keys(), glob.own(), k, rng)
            packages, hood_share = glob.packages, 0.0
            ids = table["record_id"].to_pylist() if self.hood is not None else []
            if self.hood is not None and self.tc.hard_negatives > 0:  # the last slots from the neighbourhood
                packages, neg, hood_share = self.hood.extend(packages, neg, ids, rng)
            graphs = packages.take(negative_layout(glob.own(), neg)).to_batch()
            owner = torch.arange(len(own)).repeat_interleave(1 + k)
            fast = getattr(model, "fast", False)  # DPR's fast path; baselines have none
            plan = model.plan(graphs, owner, len(own), k).to(self.device) if fast else None  # on the CPU
            extra_args = {"plan": plan} if plan is not None else {}
            if self.ranks:
                cands = self.hood.candidates(ids, package_csr(table), model)
                extra_args["candidates"] = cands.to(self.device) if cands is not None else None
            loss, extra = ddp(patients, graphs.to(self.device), owner.to(self.device), k, **extra_args)
            remote = glob.rank_of(neg[neg < len(glob.packages)]) != self.rank  # global-batch negatives only
            stats = {"gather_bytes": float(glob.bytes_sent),
                     "neg_remote_frac": float(remote.mean()) if remote.size else 0.0,
                     "pair_acc": float(extra["pair_acc"]), "hood_share": hood_share,
                     "rank": float(extra["rank"]) if "rank" in extra else 0.0}
        loss = loss + self.tc.l2 * l2_penalty(model.parameters())
        return {"loss_tensor": loss, **stats}

    # ------------------------------------------------------------------ validation
    def validate(self, model: nn.Module) -> float:
        """Validation F1 over all ranks (each rank scores the rows ``rank::world``)."""
        rows = np.arange(self.rank, self.val.table.num_rows, self.world)
        f1_sum = validation_f1_sum(model, self.val, rows, self.spec.kind, self.spec.cfg, self.spec.num_doc_words,
                                   self.device)
        total, n = _all_reduce([f1_sum, float(rows.size)], self.device)
        model.train()
        return total / n if n else 0.0


def _load_checkpoint(model: nn.Module) -> tuple[TrainState, dict | None, dict | None]:
    """Progress, optimiser state and weight average (or None) of the run's checkpoint (a
    fresh :class:`TrainState` without one); loads the raw weights into ``model``."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return TrainState(), None, None
    with ckpt.as_directory() as d:
        return load_checkpoint(Path(d), model)


def train_loop(config: dict) -> None:
    """``train_loop_per_worker`` of the :class:`~ray.train.torch.TorchTrainer` (see module docs)."""
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    spec: RunSpec = config["spec"]
    tc = spec.cfg.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, tc.cpus_per_worker))
    device = ray.train.torch.get_device()
    runner = _Runner(spec, rank, world, device)

    model = build_model(spec)
    state, optim_state, averaged_state = _load_checkpoint(model)
    prepare_model(model, spec, runner.val.relation, fresh=state.next_epoch == 0, rank=rank, say=_say)
    trainable = is_trainable(model)
    # The ranking term wraps the model's own loss; the wrapper holds no parameters of its own.
    ddp = ray.train.torch.prepare_model(CandidateRanking(model, tc.rank_weight, tc.rank_tau) if runner.ranks
                                        else model)
    optim = torch.optim.Adam(model.parameters(), lr=tc.lr)
    if optim_state is not None:
        optim.load_state_dict(optim_state)
    average = WeightAverage(model, tc.ema_decay) if tc.ema_decay > 0 else None
    if average is not None:
        average.restore(averaged_state, state.averaged_steps)
    if state.next_epoch > 0 and rank == 0:
        _say(f"[{spec.kind}] resuming at epoch {state.next_epoch} (best val F1 {state.best_val_f1:.4f})")

    shard = ray.train.get_dataset_shard("train")
    local_batch = max(1, tc.batch_size // world)
    for epoch in range(state.next_epoch, spec.epochs):
        if stopped_early(epoch, state.best_epoch, tc.patience):  # same on every rank (all-reduced val F1)
            if rank == 0:
                _say(f"[{spec.kind}] early stop after epoch {epoch}: no better val F1 for {tc.patience} epochs "
                     f"(best {state.best_val_f1:.4f} at epoch {state.best_epoch + 1})")
            break
        model.train()
        t0 = time.perf_counter()
        keys = ("loss", "records", "gather_bytes", "neg_remote_frac", "pair_acc", "hood_share", "rank", "steps")
        sums = dict.fromkeys(keys, 0.0)
        batches = shard.iter_batches(batch_size=local_batch, batch_format="pyarrow", prefetch_batches=1,
                                     local_shuffle_buffer_size=4 * local_batch,
                                     local_shuffle_seed=tc.seed * 100003 + epoch)
        for step, table in enumerate(batches if trainable else ()):
            _maybe_fail(spec, epoch, step, rank)
            rng = np.random.default_rng([tc.seed, epoch, step, rank])
            out = runner.step(ddp, model, table, rng)
            optim.zero_grad(set_to_none=True)
            out["loss_tensor"].backward()
            optim.step()
            if average is not None:
                average.update()
            sums["loss"] += float(out.pop("loss_tensor").detach()) * table.num_rows
            sums["records"] += table.num_rows
            sums["steps"] += 1
            for key, value in out.items():
                sums[key] += value
        total = dict(zip(keys, _all_reduce([sums[k] for k in keys], device)))
        seconds = time.perf_counter() - t0
        scored = model if average is None else average.averaged()  # the weights validated and shipped
        val_f1 = runner.validate(scored)
        steps = max(total["steps"], 1)
        metrics = {
            "epoch": epoch,
            "loss": total["loss"] / max(total["records"], 1),
            "val_f1": val_f1,
            "samples_per_s": total["records"] / max(seconds, 1e-9),
            "epoch_s": seconds,
            "gather_bytes_per_step": total["gather_bytes"] / steps,
            "records": int(total["records"]),
        }
        if spec.kind != "ncf":
            metrics.update(neg_remote_frac=total["neg_remote_frac"] / steps, pair_acc=total["pair_acc"] / steps,
                           hood_neg_share=total["hood_share"] / steps, rank_loss=total["rank"] / steps)
        if val_f1 > state.best_val_f1:
            state.best_val_f1, state.best_epoch = val_f1, epoch
        state.history.append(metrics)
        state.next_epoch = epoch + 1
        state.averaged_steps = 0 if average is None else average.steps
        metrics = {**metrics, "best_val_f1": state.best_val_f1, "best_epoch": state.best_epoch}
        if rank == 0:
            _say(f"[{spec.kind}] epoch {epoch + 1}/{spec.epochs} loss {metrics['loss']:.4f} "
                 f"val F1 {val_f1:.4f} {metrics['samples_per_s']:.0f} samples/s "
                 f"gather {metrics['gather_bytes_per_step'] / 1024:.1f} KiB/step/rank")
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                save_checkpoint(Path(tmp), model, optim, state, average)
                checkpoint = Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch_{epoch:04d}")
