"""Figure 8: patient groups from disease-document tokens and t-SNE of DPR mask vectors."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pyarrow as pa
import torch
from scipy import sparse

from dpr_dist.eval.evaluate import encode_records
from dpr_dist.train.collate import list_column

if TYPE_CHECKING:
    from dpr_dist.train.modeldir import ModelBundle

#: fig8: patients in no group.
OTHER = "other"


@dataclass(frozen=True)
class PatientGroup:
    """Patients whose disease document matches every clause (a clause: any of its patterns).

    Attributes:
        name: Legend label.
        clauses: ``fnmatch`` patterns over document tokens: ``((a, b), (c,))`` means
            ``(a or b) and c``.
    """

    name: str
    clauses: tuple[tuple[str, ...], ...]


def parse_group(spec: str) -> PatientGroup:
    """A group from ``"name=expr"`` or ``"expr"`` (then named by it).

    ``expr`` is clauses separated by ``,`` (all must hold), each alternatives separated by
    ``|`` (any may hold), each an ``fnmatch`` pattern over disease-document tokens (case
    ignored), e.g. ``pregnant=gender:f,lab:*hcg*:high|lab:*chorionic*:high``.

    Raises:
        ValueError: on an empty name or pattern, or the reserved name ``other``.
    """
    name, _, expr = spec.partition("=") if "=" in spec else (spec, "", spec)
    name = name.strip()
    clauses = tuple(tuple(p.strip().lower() for p in clause.split("|")) for clause in expr.split(","))
    if not name or not expr.strip() or any(not p for c in clauses for p in c):
        raise ValueError(f"patient group {spec!r}: expected name=token-pattern[|pattern][,pattern...]")
    if name == OTHER:
        raise ValueError(f"patient group {spec!r}: the name {OTHER!r} is reserved for patients in no group")
    return PatientGroup(name, clauses)


def group_labels(groups: Sequence[PatientGroup], records: pa.Table, tokens: Sequence[str]) -> np.ndarray:
    """The first matching group of every record, ``"other"`` for none.

    Args:
        groups: Groups in priority order.
        records: ``Q`` prepared records (``doc_ids``).
        tokens: The disease-document vocabulary (``doc_words.token``), ``V`` tokens.

    Returns:
        ``[Q]`` object array of group names.
    """
    indptr, ids = list_column(records, "doc_ids")
    q, vocab = records.num_rows, np.asarray(tokens, dtype=object)
    docs = sparse.csr_array((np.ones(len(ids)), ids.astype(np.int64), indptr), shape=(q, len(vocab)))
    labels = np.full(q, OTHER, dtype=object)
    for g in groups:
        hit = np.ones(q, bool)
        for clause in g.clauses:
            match = np.fromiter((any(fnmatchcase(t, p) for p in clause) for t in vocab), bool, len(vocab))
            hit &= (docs @ match.astype(np.float64)) > 0
        labels[(labels == OTHER) & hit] = g.name
    return labels


@dataclass
class MaskEmbedding:
    """Figure 8: t-SNE of mask vectors.

    Attributes:
        xy: ``[N, 2]`` t-SNE coordinates.
        labels: ``[N]`` group of each patient.
        groups: The parsed groups.
        summary: ``(group, patients, deviation)`` per group, then for ``other``: the
            group's mean distance to the centroid of the patients in no group, over that of
            those patients themselves (NaN for an empty group).
    """

    xy: np.ndarray
    labels: np.ndarray
    groups: list[PatientGroup]
    summary: list[tuple[str, int, float]]


def mask_tsne(bundle: ModelBundle, records: pa.Table, groups: Sequence[str], max_patients: int,
              seed: int) -> MaskEmbedding:
    """Mask vectors ``sigma(MLP(u))`` (``DPR.mask``) of up to ``max_patients`` records, in 2-D.

    Args:
        bundle: A model directory of a DPR variant with a mask layer.
        records: Prepared records (the test split); a seeded sample is drawn.
        groups: Group specifications (:func:`parse_group`).
        max_patients: Sample size cap (paper: 1,000).
        seed: Seed of the sample and of t-SNE.

    Raises:
        ValueError: for a model without a mask layer or fewer than 5 records.
    """
    from sklearn.manifold import TSNE

    model = bundle.model
    if model is None or not getattr(getattr(model, "variant", None), "has_mask", False):
        raise ValueError(f"fig8: model {bundle.model_name!r} has no mask layer")
    parsed = [parse_group(g) for g in groups]
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(records.num_rows, size=min(records.num_rows, max_patients), replace=False))
    if rows.size < 5:
        raise ValueError(f"fig8: needs at least 5 patients, the split has {records.num_rows}")
    sample = records.take(pa.array(rows))
    with torch.no_grad():
        u = encode_records(model.encode, sample, bundle.num_doc_words, bundle.cfg.eval.batch_size)
        mask = model.mask(u).double().numpy()
    labels = group_labels(parsed, sample, bundle.doc_words["token"].to_pylist())
    perplexity = float(min(30.0, max(2.0, (rows.size - 1) / 3)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
              random_state=seed).fit_transform(mask)
    rest = labels == OTHER
    centre = mask[rest].mean(axis=0) if rest.any() else mask.mean(axis=0)
    dist = np.linalg.norm(mask - centre, axis=1)
    base = float(dist[rest].mean()) if rest.any() else float(dist.mean())
    summary = [(g.name, int((labels == g.name).sum()),
                float(dist[labels == g.name].mean() / max(base, 1e-12)) if (labels == g.name).any() else float("nan"))
               for g in parsed]
    return MaskEmbedding(xy, labels, parsed, summary + [(OTHER, int(rest.sum()), 1.0 if rest.any() else float("nan"))])
