"""Clinician-readable explanations of one drug package for one patient (paper 5.4.2, 5.4.3).

For a package, every ordered drug pair labelled *synergism* or *antagonism* in the
relation matrix ``R`` is listed with its interaction description and what the model
made of it for this patient:

* DPR-WG (with the context factor): the contextual impact factor ``c`` of eq. 10
  (Table 7 of the paper): near 1 the interaction is kept at full strength, near 0 it is
  ignored, negative values flip it;
* DPR-AG (with the transfer matrix ``Q``): the non-personalized interaction-type
  probabilities ``softmax(e Q)`` and the personalized ``softmax(ê Q)`` (Table 8).

Every antagonistic pair (either direction) also yields a warning. Descriptions come from
the model directory (:func:`load_descriptions`); without them a sentence is made from
the label, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

from dpr_dist.data import io
from dpr_dist.data.graphs import ANTAGONISM, SYNERGISM, PairTable, ordered_pairs
from dpr_dist.eval.evaluate import candidate_graphs
from dpr_dist.eval.interaction_types import describe_type_head, has_type_head, type_head_metrics
from dpr_dist.eval.package_csr import PackageCSR
from dpr_dist.serve.api import INTERACTION_TYPES

#: File of a model directory holding interaction descriptions (``src``, ``dst``, ``description``).
DESCRIPTIONS_FILE = "descriptions.parquet"

HOW_TO_READ = (
    "Each interaction is an ordered pair (drug_1 acts on drug_2) labelled in the interaction table. "
    "contextual_impact_factor (DPR-WG) scales the interaction for this patient: near 1 kept, near 0 ignored, "
    "negative reversed. type_probabilities (DPR-AG) are the model's interaction-type probabilities for the "
    "pair in general, type_probabilities_personalized for this patient. Warnings list every antagonistic pair. "
    "The recommendation supports, and does not replace, clinical judgement."
)


@dataclass(frozen=True)
class Descriptions:
    """Interaction descriptions of ordered drug pairs (sorted keys ``src * M + dst``).

    Attributes:
        num_drugs: ``M``.
        keys: ``[K]`` int64, sorted.
        texts: ``[K]`` object array of strings.
        source: ``"model directory"`` or ``"generated from labels"`` (when empty).
    """

    num_drugs: int
    keys: np.ndarray
    texts: np.ndarray
    source: str

    @classmethod
    def empty(cls, num_drugs: int) -> "Descriptions":
        return cls(num_drugs, np.zeros(0, np.int64), np.zeros(0, object), "generated from labels")

    @classmethod
    def from_table(cls, table: pa.Table, num_drugs: int) -> "Descriptions":
        """From a table with ``src``, ``dst``, ``description`` (null descriptions are dropped)."""
        for col in ("src", "dst", "description"):
            if col not in table.column_names:
                raise ValueError(f"descriptions: missing column {col!r} (have {table.column_names})")
        table = table.filter(pa.compute.is_valid(table["description"]))
        keys = table["src"].to_numpy().astype(np.int64) * num_drugs + table["dst"].to_numpy().astype(np.int64)
        texts = np.asarray(table["description"].to_pylist(), dtype=object)
        order = np.argsort(keys, kind="stable")
        if table.num_rows == 0:
            return cls.empty(num_drugs)
        return cls(num_drugs, keys[order], texts[order], "model directory")

    def lookup(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Descriptions of pairs ``(src, dst)`` (``[P]`` object array, None where absent)."""
        keys = np.asarray(src, np.int64) * self.num_drugs + np.asarray(dst, np.int64)
        out = np.full(keys.shape, None, dtype=object)
        if len(self.keys) and len(keys):
            pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
            hit = self.keys[pos] == keys
            out[hit] = self.texts[pos[hit]]
        return out


def _read_optional(model_dir: str, name: str) -> pa.Table | None:
    fs, base = io.filesystem(model_dir)
    path = f"{base.rstrip('/')}/{name}"
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_file(path) as fh:
        return pq.read_table(fh)


def load_descriptions(model_dir: str, num_drugs: int) -> Descriptions:
    """Interaction descriptions of a model directory (local or ``s3://``).

    Looked up in order: a ``description`` column of ``relation.parquet``, then
    ``descriptions.parquet``; otherwise :meth:`Descriptions.empty` (sentences are then
    generated from the labels).
    """
    rel = _read_optional(model_dir, "relation.parquet")
    if rel is not None and "description" in rel.column_names:
        return Descriptions.from_table(rel, num_drugs)
    desc = _read_optional(model_dir, DESCRIPTIONS_FILE)
    if desc is not None:
        return Descriptions.from_table(desc, num_drugs)
    return Descriptions.empty(num_drugs)


def write_descriptions(model_dir: str, prepared: str) -> int:
    """Copy the interaction descriptions of a prepared data directory into a model directory.

    ``dpr prepare`` writes ``relation.parquet`` with ``src``, ``dst``, ``label`` and
    ``description`` over the same drug vocabulary as the model directory; this writes
    ``{model_dir}/descriptions.parquet`` (``src``, ``dst``, ``description``).

    Returns:
        The number of described pairs.

    Raises:
        ValueError: when the prepared relation has no ``description`` column.
    """
    rel = io.read_table(io.join(prepared, "relation.parquet"))
    if "description" not in rel.column_names:
        raise ValueError(f"{prepared}/relation.parquet has no description column (re-run `dpr prepare`)")
    table = rel.select(["src", "dst", "description"]).filter(pa.compute.is_valid(rel["description"]))
    io.write_table(table, io.join(model_dir, DESCRIPTIONS_FILE))
    return table.num_rows


def fallback_description(drug_1: str, drug_2: str, label: str) -> str:
    """The sentence used when the model directory has no description for a labelled pair."""
    return (f"{drug_1} and {drug_2} are labelled '{label}' in the interaction table "
            "(no description in the model directory).")


def _texts(src: np.ndarray, dst: np.ndarray, rel: np.ndarray, names: np.ndarray, desc: Descriptions) -> list[str]:
    found = desc.lookup(src, dst)
    return [t if t else fallback_description(names[a], names[b], INTERACTION_TYPES[r])
            for t, a, b, r in zip(found, src, dst, rel)]


def labelled_pairs(package: np.ndarray, relation: PairTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ordered pairs of a package labelled synergism or antagonism.

    Args:
        package: ``[n]`` drug ids.
        relation: ``R``.

    Returns:
        ``(src, dst, rel)`` drug ids and labels, ``[P]`` each.
    """
    ids = np.asarray(package, np.int64)
    _, a, b = ordered_pairs(np.array([0, ids.size]), ids)
    src, dst = ids[a], ids[b]
    rel = relation.lookup(src * relation.num_drugs + dst, -1)
    keep = (rel == SYNERGISM) | (rel == ANTAGONISM)
    return src[keep], dst[keep], rel[keep].astype(np.int64)


def antagonism_warnings(package: np.ndarray, relation: PairTable, names: np.ndarray,
                        descriptions: Descriptions) -> list[dict[str, str]]:
    """One warning per unordered antagonistic pair of the package (either direction labelled).

    Returns:
        ``[{"drug_1", "drug_2", "description", "message"}]`` in package order.
    """
    src, dst, rel = labelled_pairs(package, relation)
    anta = rel == ANTAGONISM
    src, dst = src[anta], dst[anta]
    if src.size == 0:
        return []
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    _, first = np.unique(lo * relation.num_drugs + hi, return_index=True)
    first = np.sort(first)
    texts = _texts(src[first], dst[first], np.full(first.size, ANTAGONISM), names, descriptions)
    out = []
    for a, b, t in zip(src[first], dst[first], texts):
        out.append({"drug_1": str(names[a]), "drug_2": str(names[b]), "description": t,
                    "message": f"Antagonism between {names[a]} and {names[b]}: review before prescribing together."})
    return out


def _probs(row: torch.Tensor) -> dict[str, float]:
    return {k: float(v) for k, v in zip(INTERACTION_TYPES, row.tolist())}


def _model_name(model) -> str:
    variant = getattr(model, "variant", None)
    return str(getattr(variant, "name", None) or getattr(model, "name", None) or type(model).__name__.lower())


def _edge_factors(model, u: torch.Tensor, graphs, owner: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-edge ``c`` (WG) and ``type_prob`` / ``type_prob_personal`` (AG) of many graphs in one
    forward pass: the quantities of :meth:`DPR.explain <dpr_dist.models.dpr.DPR.explain>`,
    which takes one graph at a time."""
    from dpr_dist.models.dpr import DPR

    # the GNN variant and the package baselines (paper 5.1.1) have no edge attributes
    if not isinstance(model, DPR) or model.variant.name == "gnn" or graphs.edge_index.size(1) == 0:
        return {}
    dev = next(model.parameters()).device
    aux = model.edge_factors(u.to(dev), graphs.to(dev), owner.to(dev))
    out = {k: aux[k] for k in ("c", "type_prob", "type_prob_personal") if k in aux}
    return {k: v.detach().cpu() for k, v in out.items()}


@torch.no_grad()
def how_to_read(model, relation: PairTable) -> str:
    """:data:`HOW_TO_READ`, and for a model with a type head (DPR-AG) how far its type
    probabilities can be trusted: the head checked against every labelled pair of ``R``
    (:func:`~dpr_dist.eval.interaction_types.type_head_metrics`). Compute it once per model."""
    if not has_type_head(model):
        return HOW_TO_READ
    return (f"{HOW_TO_READ} This model's type probabilities, checked against the interaction table: "
            f"{describe_type_head(type_head_metrics(model, relation))}.")


def explain_packages(model, u: torch.Tensor, packages: list[np.ndarray], relation: PairTable, cooc: PairTable,
                     threshold: float, names: np.ndarray, descriptions: Descriptions,
                     reading: str = HOW_TO_READ) -> list[dict[str, Any]]:
    """Explanations of ``P`` packages, package ``i`` for the patient of row ``i`` of ``u``.

    Args:
        model: The package model (eval mode): a :class:`~dpr_dist.models.dpr.DPR` variant,
            which decides the factors available, or a package baseline (none, like ``gnn``).
        u: ``[P, D_u]`` the patients' embeddings by ``model.encode``.
        packages: ``P`` drug-id arrays.
        relation, cooc, threshold: What the package graphs are built from.
        names: ``[M]`` drug names.
        descriptions: Interaction descriptions.
        reading: The ``how_to_read`` text (:func:`how_to_read` of the model, computed once).

    Returns:
        ``P`` dicts in the shape of :class:`~dpr_dist.serve.api.Explanation`: ``model``,
        ``drugs``, ``interactions`` (antagonism first), ``warnings``, ``how_to_read``.
    """
    pkgs = [np.asarray(p, np.int64) for p in packages]
    if not pkgs:
        return []
    sizes = np.array([p.size for p in pkgs])
    csr = PackageCSR(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                     np.concatenate(pkgs) if sizes.sum() else np.zeros(0, np.int64))
    graphs = candidate_graphs(csr, relation, cooc, threshold)
    aux = _edge_factors(model, u, graphs, torch.arange(len(pkgs)))
    src = graphs.drug[graphs.edge_index[0]].numpy()
    dst = graphs.drug[graphs.edge_index[1]].numpy()
    owner = graphs.batch[graphs.edge_index[1]].numpy()
    rel = graphs.edge_rel.numpy().astype(np.int64)
    p = graphs.edge_p.numpy()
    keep = np.flatnonzero((rel == SYNERGISM) | (rel == ANTAGONISM))
    texts = _texts(src[keep], dst[keep], rel[keep], names, descriptions)
    per: list[list[dict[str, Any]]] = [[] for _ in pkgs]
    for j, e in enumerate(keep):
        item: dict[str, Any] = {
            "drug_1": str(names[src[e]]), "drug_2": str(names[dst[e]]), "type": INTERACTION_TYPES[rel[e]],
            "description": texts[j], "co_occurrence": float(p[e]), "contextual_impact_factor": None,
            "type_probabilities": None, "type_probabilities_personalized": None}
        if "c" in aux:
            item["contextual_impact_factor"] = float(aux["c"][e])
        if "type_prob" in aux:
            item["type_probabilities"] = _probs(aux["type_prob"][e])
            item["type_probabilities_personalized"] = _probs(aux["type_prob_personal"][e])
        per[owner[e]].append(item)
    out = []
    for ids, inter in zip(pkgs, per):
        inter.sort(key=lambda it: (it["type"] != "antagonism", it["drug_1"], it["drug_2"]))
        out.append({"model": _model_name(model),
                    "drugs": [str(names[i]) for i in ids], "interactions": inter,
                    "warnings": antagonism_warnings(ids, relation, names, descriptions), "how_to_read": reading})
    return out


def explain_package(model, u: torch.Tensor, package: np.ndarray, relation: PairTable, cooc: PairTable,
                    threshold: float, names: np.ndarray, descriptions: Descriptions,
                    reading: str = HOW_TO_READ) -> dict[str, Any]:
    """The explanation of one package for one patient (``u`` ``[1, D_u]``); see
    :func:`explain_packages`."""
    return explain_packages(model, u, [package], relation, cooc, threshold, names, descriptions, reading)[0]
