"""A loaded model directory run on batches of patients, without Ray.

:class:`LoadedModel` loads a model directory (:mod:`dpr_dist.train.modeldir`, local or
``s3://``) and, for a batch of patients at a time, ranks each patient's candidate set
(packages of the ``eval.neighbors`` most similar training patients, paper 5.1.1) with the
package model (:meth:`~LoadedModel.rank`), picks the first package of that order
(:meth:`~LoadedModel.pick`) and explains packages (:meth:`~LoadedModel.explain`). The order
is the paper's, best score first, as :func:`dpr_dist.eval.evaluate.pick_packages`; or, with
``rank_by="expected_f1"``, highest expected F1 first, as ``dpr evaluate --mbr T``
(:mod:`dpr_dist.eval.mbr`). :func:`model_version` is the content hash that
names what was loaded.

Patients arrive as rows of the EMR contract (``drugs`` not needed) and are turned into
model inputs exactly as ``dpr prepare`` does (:meth:`~LoadedModel.prepare`): the same
validation rules, disease documents, note encoding and vocabularies. Drug names of a
proposed package are matched with the same :class:`~dpr_dist.data.normalize.DrugNormalizer`
rules as training data (:meth:`~LoadedModel.resolve_drugs`).

The API's answers are built on it by :class:`dpr_dist.serve.service.DPRService`.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Self, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import torch

from dpr_dist.config import check_rank_by
from dpr_dist.data import io
from dpr_dist.eval.candidate_sets import Candidates
from dpr_dist.eval.evaluate import encode_records, score_candidates
from dpr_dist.eval.generation import GenerationConfig, ranks_from_scores
from dpr_dist.eval.mbr import expected_f1
from dpr_dist.serve.explain import Descriptions, antagonism_warnings, explain_packages, how_to_read, load_descriptions
from dpr_dist.serve.inputs import DrugResolver, InputError, patients_table, prepare_table
from dpr_dist.train.modeldir import ModelBundle, load_model_dir


def model_version(model_dir: str) -> str:
    """A content hash (12 hex digits) of a model directory's metadata and weights.

    Raises:
        FileNotFoundError: when ``model_dir`` has no ``bundle.json`` (not a model directory).
    """
    fs, base = io.filesystem(model_dir)
    if fs.get_file_info(f"{base.rstrip('/')}/bundle.json").type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{model_dir} is not a model directory: no bundle.json (write one with `dpr train`)")
    h = hashlib.sha256()
    for name in ("bundle.json", "metrics.json", "ncf.pt", "model.pt"):
        path = f"{base.rstrip('/')}/{name}"
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            continue
        with fs.open_input_file(path) as fh:
            h.update(name.encode() + b"\0" + fh.read())
    return h.hexdigest()[:12]


@dataclass
class Ranked:
    """Candidate sets of ``Q`` patients scored by the package model.

    Attributes:
        u: ``[Q, D_u]`` the package model's patient embeddings.
        u_ncf: ``[Q, D]`` the pre-trained NCF embeddings (candidate search).
        cands: The candidate sets.
        scores: ``[C]`` one score per flat candidate (order of :meth:`Candidates.flat`).
        grid: ``[Q, k]`` the same scores per slot, ``-inf`` on padding.
        expected: ``[Q, k]`` expected F1 per slot (``-inf`` on padding) when ranked by it,
            else None.
        order: ``[Q, k]`` slots by descending score, or expected F1 (ties: more similar first).
    """

    u: torch.Tensor
    u_ncf: torch.Tensor
    cands: Candidates
    scores: np.ndarray
    grid: np.ndarray
    expected: np.ndarray | None
    order: np.ndarray


class LoadedModel:
    """A loaded model directory that prepares, ranks and explains batches of patients.

    Args:
        bundle: The loaded model directory; it must hold a package model.
        version: Content hash shown by ``/v1/model`` (:func:`model_version`).
        descriptions: Interaction descriptions (default: none, label sentences).
        top_k: Default number of packages returned per patient.
        rank_by: ``score`` (the paper) or ``expected_f1``
            (:attr:`~dpr_dist.config.ServeConfig.rank_by`).
        temperature: ``T`` of ``expected_f1``.
        generation: Thresholds of the generation heuristic (default:
            :class:`GenerationConfig` with ``low_cooc`` = the graph threshold).
        device: Where the models run (CPU by default).

    Raises:
        ValueError: for an NCF-only model directory, or a bad ``rank_by`` / ``temperature``.
    """

    def __init__(self, bundle: ModelBundle, *, version: str = "", descriptions: Descriptions | None = None,
                 top_k: int = 5, rank_by: str = "score", temperature: float = 1.0,
                 generation: GenerationConfig | None = None, device: torch.device | str | None = None) -> None:
        if bundle.model is None:
            raise ValueError(f"model directory {bundle.path} holds only NCF; serving needs a package model "
                             "(train one with `dpr train`)")
        self.bundle = bundle
        self.version = version
        self.device = torch.device(device) if device is not None else None
        self.model = bundle.model.eval() if self.device is None else bundle.model.to(self.device).eval()
        self.ncf = bundle.ncf.eval() if self.device is None else bundle.ncf.to(self.device).eval()
        self.top_k = int(top_k)
        check_rank_by(rank_by, temperature)
        self.rank_by, self.temperature = rank_by, float(temperature)
        self.names = np.asarray(bundle.drugs["name"].to_pylist(), dtype=object)
        aligned = bundle.drugs["aligned"].to_pylist() if "aligned" in bundle.drugs.column_names else []
        self.drugs = DrugResolver(self.names, aligned)
        self.doc_vocab = bundle.doc_words["token"].combine_chunks()
        self.descriptions = descriptions if descriptions is not None else Descriptions.empty(bundle.num_drugs)
        self.generation = generation or GenerationConfig(low_cooc=min(bundle.threshold, 0.5))
        self.neighbors = int(bundle.cfg.eval.neighbors)
        self.note_max_len = int(bundle.cfg.data.note_max_len)
        self._L_rank = ranks_from_scores(bundle.popularity().astype(np.float64))
        self.loaded_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
        self.how_to_read = how_to_read(self.model, bundle.relation)  # with DPR-AG's type-head check

    @classmethod
    def load(cls, model_dir: str, *, top_k: int = 5, rank_by: str = "score", temperature: float = 1.0,
             generation: GenerationConfig | None = None, device: torch.device | str | None = None) -> Self:
        """Load a model directory (local path or ``s3://``) with its descriptions and version."""
        bundle = load_model_dir(model_dir)
        return cls(bundle, version=model_version(model_dir),
                   descriptions=load_descriptions(model_dir, bundle.num_drugs), top_k=top_k, rank_by=rank_by,
                   temperature=temperature, generation=generation, device=device)

    def with_options(self, *, top_k: int | None = None, rank_by: str | None = None, temperature: float | None = None,
                     generation: GenerationConfig | None = None) -> Self:
        """The same loaded model with other defaults (no reload)."""
        other = copy.copy(self)
        if top_k is not None:
            other.top_k = int(top_k)
        if rank_by is not None or temperature is not None:
            rank_by = other.rank_by if rank_by is None else rank_by
            temperature = other.temperature if temperature is None else float(temperature)
            check_rank_by(rank_by, temperature)
            other.rank_by, other.temperature = rank_by, temperature
        if generation is not None:
            other.generation = generation
        return other

    # ------------------------------------------------------------------ inputs
    def patients_table(self, patients: Sequence[Mapping[str, Any]]) -> pa.Table:
        """See :func:`dpr_dist.serve.inputs.patients_table`."""
        return patients_table(patients)

    def prepare(self, table: pa.Table, source: str = "") -> tuple[pa.Table, pa.Table]:
        """:func:`~dpr_dist.serve.inputs.prepare_table` over this model's vocabularies:
        ``(prepared, rejects)``."""
        return prepare_table(table, self.doc_vocab, self.note_max_len, source)

    def prepare_patients(self, patients: Sequence[Mapping[str, Any]]) -> pa.Table:
        """:meth:`prepare` for patient dicts; the first bad one raises :class:`InputError`."""
        prepared, rejects = self.prepare(patients_table(patients))
        if rejects.num_rows:
            r = rejects.to_pylist()[0]
            raise InputError(f"patient.{r['field']}", r["reason"], r["record_id"])
        return prepared

    def resolve_drugs(self, names: Sequence[str], field: str = "drugs", record_id: str | None = None) -> np.ndarray:
        """See :meth:`dpr_dist.serve.inputs.DrugResolver.resolve`."""
        return self.drugs.resolve(names, field, record_id)

    # ------------------------------------------------------------------ model
    def _encode(self, prepared: pa.Table) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.bundle.num_doc_words
        bs = self.bundle.cfg.eval.batch_size
        u_ncf = encode_records(self.ncf.encode, prepared, v, bs, self.device)
        u = encode_records(self.model.encode, prepared, v, bs, self.device)
        return u_ncf, u

    def rank(self, prepared: pa.Table) -> Ranked:
        """Candidate sets of the prepared patients, scored by the package model and ordered
        by ``rank_by``."""
        b = self.bundle
        u_ncf, u = self._encode(prepared)
        cands = b.index.query(u_ncf, k=self.neighbors)
        scores = score_candidates(self.model, u, cands, b.relation, b.cooc, b.threshold,
                                  b.cfg.eval.batch_size, self.device)
        valid = cands.valid
        grid = np.full(valid.shape, -np.inf)
        grid[valid] = scores
        expected = None
        if self.rank_by == "expected_f1":
            expected = np.full(valid.shape, -np.inf)
            expected[valid] = expected_f1(cands, scores, self.temperature)
        order = np.argsort(-(grid if expected is None else expected), axis=1, kind="stable")
        return Ranked(u, u_ncf, cands, scores, grid, expected, order)

    def pick(self, prepared: pa.Table) -> tuple[list[np.ndarray], np.ndarray]:
        """The first candidate package of each patient in ``rank_by`` order and its model
        score (NaN when none)."""
        r = self.rank(prepared)
        slot, packages = r.cands.pick(r.scores if r.expected is None else r.expected[r.cands.valid])
        rows = np.arange(len(slot))
        best = np.where(slot >= 0, r.grid[rows, np.maximum(slot, 0)], np.nan)
        return packages, best

    def explain(self, u: torch.Tensor, packages: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Explanations of ``P`` packages, package ``i`` for the patient with embedding ``u[i]``
        (``u`` ``[P, D_u]``), in one model call."""
        b = self.bundle
        return explain_packages(self.model, u, list(packages), b.relation, b.cooc, b.threshold, self.names,
                                self.descriptions, self.how_to_read)

    def warnings(self, package: np.ndarray) -> list[dict[str, str]]:
        """Antagonism warnings of a package (no model call)."""
        return antagonism_warnings(package, self.bundle.relation, self.names, self.descriptions)

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/model`` shows: name, version, sizes, data manifest, metrics."""
        b = self.bundle
        return {"name": b.model_name, "version": self.version, "model_dir": str(b.path),
                "created": b.info.get("created"), "loaded_at": self.loaded_at, "num_drugs": b.num_drugs,
                "num_doc_words": b.num_doc_words, "training_patients": len(b.index), "threshold": b.threshold,
                "neighbors": self.neighbors, "top_k": self.top_k, "rank_by": self.rank_by,
                "temperature": self.temperature if self.rank_by == "expected_f1" else None,
                "descriptions": self.descriptions.source,
                "manifest": b.manifest, "metrics": b.metrics}
