"""The patient encoder (eqs. 1-3), notes and no notes."""

from __future__ import annotations

import pytest
import torch

from dpr_dist.models.batch import PatientBatch
from dpr_dist.models.encoder import PatientEncoder

V, C, L = 12, 10, 9


@pytest.fixture
def encoder(small_cfg):
    torch.manual_seed(0)
    return PatientEncoder(small_cfg, num_doc_words=V, num_chars=C)


def test_shape_and_halves(encoder, small_cfg, make_patients):
    p = make_patients(5, V, C, L, empty_rows=(), seed=0)
    u = encoder(p)
    assert u.shape == (5, small_cfg.mlp_out + small_cfg.lstm_hidden) == (5, encoder.out_dim)
    torch.testing.assert_close(u[:, : small_cfg.mlp_out], encoder.doc_mlp(p.doc))  # eq. 1


def test_note_embedding_is_last_lstm_state_of_unpadded_note(encoder, small_cfg, make_patients):
    """eq. 2 per record, independent of the other rows and of the padding."""
    p = make_patients(6, V, C, L, empty_rows=(), seed=1)
    assert len(set(p.note_len.tolist())) > 2  # lengths differ, so packing reorders rows
    h_q = encoder(p)[:, small_cfg.mlp_out :]
    for i in range(6):
        seq = p.note[i, : p.note_len[i]]
        _, (h_n, _) = encoder.lstm(encoder.char_emb(seq)[None])
        torch.testing.assert_close(h_q[i], h_n[-1, 0])
    # Changing characters past note_len changes nothing.
    noisy = p.note.clone()
    pad = torch.arange(L)[None, :] >= p.note_len[:, None]
    noisy[pad] = 3
    torch.testing.assert_close(encoder(PatientBatch(p.doc, noisy, p.note_len)), encoder(p))


def test_note_gradients_are_those_of_each_unpadded_note(encoder, small_cfg, make_patients):
    """The backward pass through the padded batch equals the per-record one."""
    p = make_patients(6, V, C, L, empty_rows=(2,), seed=4)
    encoder(p)[:, small_cfg.mlp_out:].pow(2).sum().backward()
    batched = {n: q.grad.clone() for n, q in encoder.named_parameters() if n.startswith(("lstm", "char_emb"))}
    encoder.zero_grad()
    for i in range(6):
        n = int(p.note_len[i])
        if n:
            _, (h_n, _) = encoder.lstm(encoder.char_emb(p.note[i, :n])[None])
            h_n[-1, 0].pow(2).sum().backward()
    for name, grad in batched.items():
        torch.testing.assert_close(grad, dict(encoder.named_parameters())[name].grad, msg=name)


def test_empty_notes_get_learned_embedding(encoder, small_cfg, make_patients):
    with torch.no_grad():
        encoder.empty_note.copy_(torch.linspace(-1, 1, small_cfg.lstm_hidden))
    p = make_patients(4, V, C, L, empty_rows=(0, 2), seed=2)
    u = encoder(p)
    assert torch.isfinite(u).all()
    torch.testing.assert_close(u[0, small_cfg.mlp_out :], encoder.empty_note)
    torch.testing.assert_close(u[2, small_cfg.mlp_out :], encoder.empty_note)
    assert not torch.allclose(u[1, small_cfg.mlp_out :], encoder.empty_note)


def test_batch_without_any_note(encoder, small_cfg):
    """MIMIC-IV: no notes at all, note tensor of width 0; the LSTM still takes part."""
    doc = (torch.rand(3, V) < 0.3).float()
    p = PatientBatch(doc, torch.zeros(3, 0, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    u = encoder(p)
    assert u.shape == (3, encoder.out_dim) and torch.isfinite(u).all()
    u.sum().backward()
    assert encoder.empty_note.grad is not None and encoder.empty_note.grad.abs().sum() > 0
    assert all(p.grad is not None for p in encoder.lstm.parameters())  # in the graph (DDP)


def test_gradients_reach_note_and_document_parts(encoder, make_patients):
    p = make_patients(4, V, C, L, empty_rows=(3,), seed=3)
    u = encoder(p)
    (u * torch.randn_like(u)).sum().backward()
    for name, param in encoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_initialization(encoder):
    assert torch.all(encoder.char_emb.weight[0] == 0)  # padding
    assert torch.all(encoder.doc_mlp[0].bias == 0) and torch.all(encoder.lstm.bias_ih_l0 == 0)
    assert torch.all(encoder.empty_note == 0)


def test_bad_input_names_row_and_field(encoder, make_patients):
    p = make_patients(3, V, C, L, empty_rows=(), seed=4)
    long_len = p.note_len.clone()
    long_len[1] = L + 1
    with pytest.raises(ValueError, match=r"note_len: row 1 .*outside"):
        encoder(PatientBatch(p.doc, p.note, long_len))
    bad_note = p.note.clone()
    bad_note[2, 0] = C
    with pytest.raises(ValueError, match=r"note: row 2 has a character id outside"):
        encoder(PatientBatch(p.doc, bad_note, p.note_len))
    with pytest.raises(ValueError, match=r"doc: expected 12 disease-document columns, got 11"):
        encoder(PatientBatch(p.doc[:, :-1], p.note, p.note_len))
    with pytest.raises(ValueError, match=r"PatientBatch.note_len: expected \[3\]"):
        PatientBatch(p.doc, p.note, p.note_len[:2])
