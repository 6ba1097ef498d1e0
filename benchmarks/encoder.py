"""Patient encoder training step: the padded-batch note LSTM next to a packed-sequence one.

Times forward + backward of :class:`dpr_dist.models.encoder.PatientEncoder` (eqs. 1-3) on
batches of real prepared records (their disease documents and notes, collated as in
training), in one process and one run, for two implementations of eq. 2 that compute the
same ``h_q``:

* ``library`` -- the LSTM over the padded batch, read at each note's last character (what
  :meth:`PatientEncoder.encode_note` does);
* ``packed`` -- ``pack_padded_sequence`` and the LSTM's final state ``h_n`` (the usual
  PyTorch idiom; until 2026-12-07 the encoder of NCF and the package baselines ran it,
  while DPR's fast path already ran the padded batch).

It checks that both give the same embeddings and gradients, then prints ms per step and
records/s of each, and the ratio. The note lengths are those of the data (synthetic notes:
about 110-200 characters).

    python benchmarks/encoder.py                       # configs/bench.yaml dimensions, 1 thread
    python benchmarks/encoder.py --batch 256 --threads 2
    python benchmarks/encoder.py --prepared runs/bench-exp/prepared
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import ensure_prepared  # noqa: E402
from dpr_dist.config import load_config  # noqa: E402
from dpr_dist.data.documents import NOTE_VOCAB_SIZE  # noqa: E402
from dpr_dist.models.encoder import PatientEncoder  # noqa: E402
from dpr_dist.train.collate import collate_patients  # noqa: E402
from dpr_dist.train.prepared import load_prepared, read_records  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def packed_note(enc: PatientEncoder, note: torch.Tensor, note_len: torch.Tensor) -> torch.Tensor:
    """eq. 2 through ``pack_padded_sequence`` (the reference)."""
    from torch.nn.utils.rnn import pack_padded_sequence

    lengths = note_len.clamp(min=1)
    note = note[:, : int(lengths.max())]
    packed = pack_padded_sequence(enc.char_emb(note), lengths, batch_first=True, enforce_sorted=False)
    _, (h_n, _) = enc.lstm(packed)
    return torch.where((note_len > 0).unsqueeze(-1), h_n[-1], enc.empty_note.expand_as(h_n[-1]))


def step(enc: PatientEncoder, batch, packed: bool) -> torch.Tensor:
    """Forward and backward of ``sum(u ** 2)``; returns ``u``."""
    enc.zero_grad(set_to_none=True)
    if packed:
        u = torch.cat([enc.doc_mlp(batch.doc), packed_note(enc, batch.note, batch.note_len)], dim=-1)
    else:
        u = enc(batch)
    u.pow(2).sum().backward()
    return u.detach()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=os.path.join(REPO, "configs", "bench.yaml"))
    p.add_argument("--prepared", help="prepared data (default: synthetic, generated once into --workdir)")
    p.add_argument("--records", type=int, default=3000)
    p.add_argument("--drugs", type=int, default=120)
    p.add_argument("--batch", type=int, default=128, help="records per step (a worker's share of train.batch_size)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per implementation and repeat")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats; the best is reported")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a Ray Train worker uses cpus_per_worker)")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "dpr-bench"))
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    prepared = args.prepared or ensure_prepared(cfg, args.workdir, args.records, args.drugs)
    prep = load_prepared(prepared)
    table = read_records(prepared, "train")
    batches = [collate_patients(table.slice(i * args.batch, args.batch), prep.num_doc_words)
               for i in range(min(args.steps, table.num_rows // args.batch))]
    torch.manual_seed(0)
    enc = PatientEncoder(cfg.model, prep.num_doc_words, NOTE_VOCAB_SIZE)

    u0, g0 = step(enc, batches[0], packed=True), [q.grad.clone() for q in enc.parameters()]
    u1, g1 = step(enc, batches[0], packed=False), [q.grad.clone() for q in enc.parameters()]
    diff_u = float((u1 - u0).abs().max())
    diff_g = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-30)) for a, b in zip(g1, g0))

    best = {"packed": float("inf"), "library": float("inf")}
    for _ in range(args.repeats):
        for name in best:
            t = time.perf_counter()
            for b in batches:
                step(enc, b, packed=name == "packed")
            best[name] = min(best[name], (time.perf_counter() - t) / len(batches))
    lengths = torch.cat([b.note_len for b in batches]).float()
    print(f"data {prepared}: {len(batches)} batches of {args.batch} records, notes {lengths.min():.0f}-"
          f"{lengths.max():.0f} characters (mean {lengths.mean():.0f}); dims char {cfg.model.char_dim}, "
          f"lstm {cfg.model.lstm_hidden}, mlp_out {cfg.model.mlp_out}; {args.threads} thread(s)")
    print(f"same function: max |u difference| {diff_u:.2e}, max relative gradient difference {diff_g:.2e}")
    print(f"{'implementation':<16}{'ms/step':>10}{'records/s':>12}{'vs packed':>11}")
    for name in ("packed", "library"):
        print(f"{name:<16}{1000 * best[name]:>10.1f}{args.batch / best[name]:>12.0f}"
              f"{best['packed'] / best[name]:>10.2f}x")


if __name__ == "__main__":
    main()
