"""The patient encoder of paper 4.1 (eqs. 1-3), shared by NCF and DPR."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dpr_dist.config import ModelConfig
from dpr_dist.models.batch import PatientBatch
from dpr_dist.models.layers import MLP, kaiming_init


class PatientEncoder(nn.Module):
    """Patient embedding ``u = [m_w || h_q]`` from the disease document and the note.

    * ``m_w = MLP(W)`` over the multi-hot disease document (eq. 1);
    * ``h_q``: the last hidden state of a character-level LSTM over the admission note
      (eq. 2): the LSTM's output at the note's last character (the LSTM is causal, so the
      padding after it changes nothing);
    * ``u = [m_w || h_q]`` (eq. 3).

    Records without a note (``note_len == 0``; MIMIC-IV has no notes) get a learned
    empty-note embedding in place of ``h_q`` (initialized to zero, the LSTM's own
    initial state). The LSTM runs on every batch, even one without notes, so its
    parameters always take part in the graph (as DistributedDataParallel expects).

    Args:
        cfg: Dimensions ``mlp_out``, ``char_dim``, ``lstm_hidden``, ``hidden``.
        num_doc_words: Size ``V_doc`` of the disease-document vocabulary.
        num_chars: Size of the character vocabulary, padding id 0 included (ids of
            note characters are in ``[1, num_chars)``).

    Shapes:
        ``PatientBatch`` of ``B`` records -> ``[B, mlp_out + lstm_hidden]``
    """

    def __init__(self, cfg: ModelConfig, num_doc_words: int, num_chars: int) -> None:
        super().__init__()
        if num_doc_words < 1:
            raise ValueError(f"PatientEncoder: num_doc_words must be >= 1, got {num_doc_words}")
        if num_chars < 2:
            raise ValueError(f"PatientEncoder: num_chars must be >= 2 (padding + 1), got {num_chars}")
        self.num_doc_words = num_doc_words
        self.num_chars = num_chars
        self.out_dim = cfg.mlp_out + cfg.lstm_hidden
        self.doc_mlp = MLP(num_doc_words, cfg.hidden, cfg.mlp_out)  # eq. 1
        self.char_emb = nn.Embedding(num_chars, cfg.char_dim, padding_idx=0)
        self.lstm = nn.LSTM(cfg.char_dim, cfg.lstm_hidden, batch_first=True)  # eq. 2
        self.empty_note = nn.Parameter(torch.zeros(cfg.lstm_hidden))
        kaiming_init(self)

    def check(self, p: PatientBatch) -> None:
        """Validate a batch against this encoder's vocabularies.

        Raises:
            ValueError: naming the batch row and the field (never the note's content).
        """
        if p.doc.size(1) != self.num_doc_words:
            raise ValueError(
                f"PatientBatch.doc: expected {self.num_doc_words} disease-document columns, "
                f"got {p.doc.size(1)}"
            )
        width = p.note.size(1)
        bad = ((p.note_len < 0) | (p.note_len > width)).nonzero()
        if bad.numel():
            row = int(bad[0, 0])
            raise ValueError(
                f"PatientBatch.note_len: row {row} has length {int(p.note_len[row])} outside "
                f"[0, {width}] (note width)"
            )
        if width:
            bad = ((p.note < 0) | (p.note >= self.num_chars)).any(dim=1).nonzero()
            if bad.numel():
                raise ValueError(
                    f"PatientBatch.note: row {int(bad[0, 0])} has a character id outside "
                    f"[0, {self.num_chars})"
                )

    def encode_note(self, note: Tensor, note_len: Tensor) -> Tensor:
        """Note embedding ``h_q`` (eq. 2), the learned empty-note embedding if no note.

        The LSTM runs over the padded batch and ``h_q`` is its output at each note's last
        character: the LSTM is causal, so that is the state a packed sequence ends in. This
        trains 8-14x faster on the CPU than ``pack_padded_sequence``, whose backward pass
        fills a zero tensor of the whole batch's characters at every time step
        (``python benchmarks/encoder.py``), and needs no lengths on the host.

        Args:
            note: ``[B, L]`` int64 character ids, 0 = padding.
            note_len: ``[B]`` int64 lengths.

        Returns:
            ``[B, lstm_hidden]``.
        """
        note = note if note.size(1) else note.new_zeros(note.size(0), 1)  # no note column at all
        out, _ = self.lstm(self.char_emb(note))  # [B, L, H]
        last = (note_len.clamp(min=1) - 1).view(-1, 1, 1).expand(-1, 1, out.size(2))
        h_q = out.gather(1, last).squeeze(1)  # an empty note reads its one padding step, then is replaced
        return torch.where((note_len > 0).unsqueeze(-1), h_q, self.empty_note.expand_as(h_q))

    def embed(self, p: PatientBatch) -> Tensor:
        """``u`` without validating the batch (:meth:`forward` validates first).

        Returns:
            ``[B, mlp_out + lstm_hidden]`` (eq. 3).
        """
        return torch.cat([self.doc_mlp(p.doc), self.encode_note(p.note, p.note_len)], dim=-1)  # eqs. 1-3

    def forward(self, p: PatientBatch) -> Tensor:
        """Embed patients.

        Args:
            p: The batch.

        Returns:
            ``u`` ``[B, mlp_out + lstm_hidden]`` (eq. 3).
        """
        self.check(p)
        return self.embed(p)
