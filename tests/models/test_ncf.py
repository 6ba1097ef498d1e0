"""NCF pre-training (eqs. 4-5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dpr_dist.models.ncf import NCF

M, V, C, L = 15, 12, 10, 9


@pytest.fixture
def ncf(small_cfg):
    torch.manual_seed(0)
    return NCF(small_cfg, num_drugs=M, num_doc_words=V, num_chars=C)


def test_score_is_mlp_of_concatenation(ncf, make_patients):
    p = make_patients(4, V, C, L, empty_rows=(1,), seed=0)
    u = ncf.encode(p)
    drugs = torch.randint(0, M, (4, 6))
    r = ncf.score(u, drugs)
    assert r.shape == (4, 6)
    i, k = 2, 3
    manual = ncf.match(torch.cat([u[i], ncf.drug_emb.weight[drugs[i, k]]]))  # eq. 4
    torch.testing.assert_close(r[i, k], manual[0])


def test_rank_drugs_equals_score_of_every_drug(ncf, make_patients):
    p = make_patients(3, V, C, L, empty_rows=(), seed=1)
    u = ncf.encode(p)
    full = ncf.score(u, torch.arange(M).expand(3, M))
    for chunk in (1 << 24, 3 * 24 * 4):  # one chunk / several chunks of 4 drugs
        torch.testing.assert_close(ncf.rank_drugs(u, chunk_elems=chunk), full.detach())


def test_loss_is_masked_mean_bpr(ncf, make_patients):
    p = make_patients(2, V, C, L, empty_rows=(0,), seed=2)
    pos = torch.tensor([[1, 2, 3], [4, 5, 0]])
    neg = torch.randint(6, M, (2, 3, 4))
    mask = torch.tensor([[True, True, True], [True, True, False]])
    loss = ncf.loss(p, pos, neg, mask)
    u = ncf.encode(p)
    terms = []
    for i in range(2):
        for j in range(3):
            if mask[i, j]:
                r_pos = ncf.score(u[i : i + 1], pos[i : i + 1, j : j + 1])[0, 0]
                r_neg = ncf.score(u[i : i + 1], neg[i : i + 1, j])[0]
                terms.append(-F.logsigmoid(r_pos - r_neg))  # eq. 5
    torch.testing.assert_close(loss, torch.cat(terms).mean())
    # Padding entries are ignored, whatever ids they hold.
    pos2, neg2 = pos.clone(), neg.clone()
    pos2[1, 2], neg2[1, 2] = 99, -7
    torch.testing.assert_close(ncf.loss(p, pos2, neg2, mask), loss)
    torch.testing.assert_close(ncf(p, pos2, neg2, mask), loss)  # forward is the loss


def test_bpr_decreases_and_ranks_positives_first(small_cfg, make_patients):
    """Toy problem: 4 patients, each with its own 3 drugs."""
    torch.manual_seed(0)
    ncf = NCF(small_cfg, num_drugs=M, num_doc_words=V, num_chars=C)
    p = make_patients(4, V, C, L, empty_rows=(2,), seed=3)
    pos = torch.arange(12).view(4, 3)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(ncf.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        # Negatives: random drugs outside the patient's package.
        neg = (pos[:, :1, None] + torch.randint(3, M, (4, 3, 5), generator=gen)) % M
        loss = ncf.loss(p, pos, neg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    with torch.no_grad():
        top = ncf.rank_drugs(ncf.encode(p)).topk(3, dim=1).indices.sort(dim=1).values
    assert torch.equal(top, pos)


def test_bad_drug_ids_and_shapes(ncf, make_patients):
    p = make_patients(2, V, C, L, empty_rows=(), seed=4)
    u = ncf.encode(p)
    with pytest.raises(ValueError, match=r"drugs: row 1 holds an id outside \[0, 15\)"):
        ncf.score(u, torch.tensor([[0, 1], [2, 15]]))
    with pytest.raises(ValueError, match=r"neg must be \[2, 3, N\]"):
        ncf.loss(p, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="no valid positive"):
        ncf.loss(p, torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1, 2, dtype=torch.long),
                 torch.zeros(2, 1, dtype=torch.bool))
