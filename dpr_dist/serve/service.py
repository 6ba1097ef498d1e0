"""The model-facing logic of serving and batch scoring, without Ray.

:class:`DPRService` loads a model directory (:mod:`dpr_dist.train.modeldir`, local or
``s3://``) and answers, for a batch of patients at a time:

* :meth:`~DPRService.recommend` -- the top-``k`` packages of each patient's candidate set
  (packages of the ``eval.neighbors`` most similar training patients, paper 5.1.1) ranked
  by the package model, with an explanation of the first;
* :meth:`~DPRService.score` -- the score of a proposed package, its rank against the
  candidate set and its explanation;
* :meth:`~DPRService.generate` -- the candidate set extended by the package-generation
  heuristic (paper 6, :mod:`dpr_dist.eval.generation`), ranked and explained;
* :meth:`~DPRService.pick` -- only the best package and its score (batch scoring); the
  same choice as :func:`dpr_dist.eval.evaluate.pick_packages`.

Patients arrive as rows of the EMR contract (``drugs`` not needed) and are turned into
model inputs exactly as ``dpr prepare`` does (:meth:`~DPRService.prepare`): the same
validation rules, disease documents, note encoding and vocabularies. Drug names of a
proposed package are matched with the same :class:`~dpr_dist.data.normalize.DrugNormalizer`
rules as training data (:meth:`~DPRService.resolve_drugs`).

The Ray Serve deployment (:mod:`dpr_dist.serve.app`), the plain FastAPI baseline and the
batch scorer (:mod:`dpr_dist.score.batch`) all call this class.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import logging
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import torch

from dpr_dist.data import io
from dpr_dist.eval.candidates import Candidates, packages_to_csr
from dpr_dist.eval.evaluate import candidate_graphs, encode_records, score_candidates
from dpr_dist.eval.generation import GenerationConfig, flatten, generate_batch, ranks_from_scores
from dpr_dist.serve.explain import Descriptions, antagonism_warnings, explain_packages, load_descriptions
from dpr_dist.serve.inputs import DrugResolver, InputError, patients_table, prepare_table
from dpr_dist.train.modeldir import ModelBundle, load_model_dir

log = logging.getLogger(__name__)

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
        order: ``[Q, k]`` slots by descending score (ties: more similar first).
    """

    u: torch.Tensor
    u_ncf: torch.Tensor
    cands: Candidates
    scores: np.ndarray
    grid: np.ndarray
    order: np.ndarray


class DPRService:
    """A loaded model directory answering recommendation requests for batches of patients.

    Args:
        bundle: The loaded model directory; it must hold a package model.
        version: Content hash shown by ``/v1/model`` (:func:`model_version`).
        descriptions: Interaction descriptions (default: none, label sentences).
        top_k: Default number of packages returned per patient.
        generation: Thresholds of the generation heuristic (default:
            :class:`GenerationConfig` with ``low_cooc`` = the graph threshold).
        device: Where the models run (CPU by default).

    Raises:
        ValueError: for an NCF-only model directory.
    """

    def __init__(self, bundle: ModelBundle, *, version: str = "", descriptions: Descriptions | None = None,
                 top_k: int = 5, generation: GenerationConfig | None = None,
                 device: torch.device | str | None = None) -> None:
        if bundle.model is None:
            raise ValueError(f"model directory {bundle.path} holds only NCF; serving needs a package model "
                             "(train one with `dpr train`)")
        self.bundle = bundle
        self.version = version
        self.device = torch.device(device) if device is not None else None
        self.model = bundle.model.eval() if self.device is None else bundle.model.to(self.device).eval()
        self.ncf = bundle.ncf.eval() if self.device is None else bundle.ncf.to(self.device).eval()
        self.top_k = int(top_k)
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

    @classmethod
    def load(cls, model_dir: str, *, top_k: int = 5, generation: GenerationConfig | None = None,
             device: torch.device | str | None = None) -> "DPRService":
        """Load a model directory (local path or ``s3://``) with its descriptions and version."""
        bundle = load_model_dir(model_dir)
        return cls(bundle, version=model_version(model_dir),
                   descriptions=load_descriptions(model_dir, bundle.num_drugs), top_k=top_k,
                   generation=generation, device=device)

    def with_options(self, *, top_k: int | None = None, generation: GenerationConfig | None = None) -> "DPRService":
        """The same loaded model with other defaults (no reload)."""
        other = copy.copy(self)
        if top_k is not None:
            other.top_k = int(top_k)
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
        """Candidate sets of the prepared patients, scored by the package model."""
        b = self.bundle
        u_ncf, u = self._encode(prepared)
        cands = b.index.query(u_ncf, k=self.neighbors)
        scores = score_candidates(self.model, u, cands, b.relation, b.cooc, b.threshold,
                                  b.cfg.eval.batch_size, self.device)
        valid = cands.valid
        grid = np.full(valid.shape, -np.inf)
        grid[valid] = scores
        order = np.argsort(-grid, axis=1, kind="stable")
        return Ranked(u, u_ncf, cands, scores, grid, order)

    def pick(self, prepared: pa.Table) -> tuple[list[np.ndarray], np.ndarray]:
        """The best candidate package of each patient and its score (NaN when none)."""
        r = self.rank(prepared)
        slot, packages = r.cands.pick(r.scores)
        rows = np.arange(len(slot))
        best = np.where(slot >= 0, r.grid[rows, np.maximum(slot, 0)], np.nan)
        return packages, best

    def _package(self, r: Ranked, i: int, slot: int) -> np.ndarray:
        row = r.cands.neighbors[i, slot]
        return r.cands.pkg_indices[r.cands.pkg_indptr[row]: r.cands.pkg_indptr[row + 1]]

    def explain(self, u: torch.Tensor, packages: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Explanations of ``P`` packages, package ``i`` for the patient with embedding ``u[i]``
        (``u`` ``[P, D_u]``), in one model call."""
        b = self.bundle
        return explain_packages(self.model, u, list(packages), b.relation, b.cooc, b.threshold, self.names,
                                self.descriptions)

    def warnings(self, package: np.ndarray) -> list[dict[str, str]]:
        """Antagonism warnings of a package (no model call)."""
        return antagonism_warnings(package, self.bundle.relation, self.names, self.descriptions)

    def _head(self, prepared: pa.Table, i: int) -> dict[str, Any]:
        return {"record_id": str(prepared["record_id"][i].as_py()), "model": self.bundle.model_name,
                "model_version": self.version}

    def recommend(self, prepared: pa.Table, top_k: Sequence[int | None] | int | None = None,
                  explain: bool = True) -> list[dict[str, Any]]:
        """Top-``k`` candidate packages of each patient, with the first one explained.

        Args:
            prepared: ``Q`` patients from :meth:`prepare`.
            top_k: Packages per patient: one value or one per patient (None = default).
            explain: Whether to explain the first package.

        Returns:
            ``Q`` dicts in the shape of :class:`~dpr_dist.serve.api.RecommendResponse`
            (without ``request_id``).
        """
        r = self.rank(prepared)
        ks = self._ks(top_k, len(r.cands))
        out, firsts = [], []
        for i in range(len(r.cands)):
            slots = [s for s in r.order[i] if r.cands.neighbors[i, s] >= 0][: ks[i]]
            packages = [{"rank": j + 1, "drugs": self._names(self._package(r, i, s)), "score": float(r.grid[i, s]),
                         "origin": "candidate", "similarity": float(r.cands.similarity[i, s]), "rules": []}
                        for j, s in enumerate(slots)]
            if explain and slots:
                firsts.append((i, self._package(r, i, slots[0])))
            out.append({**self._head(prepared, i), "candidates": int(r.cands.counts[i]), "packages": packages,
                        "explanation": None})
        if firsts:
            rows = torch.tensor([i for i, _ in firsts])
            for (i, _), expl in zip(firsts, self.explain(r.u[rows], [p for _, p in firsts])):
                out[i]["explanation"] = expl
        return out

    def score(self, prepared: pa.Table, packages: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Score proposed packages (one per patient) against each patient's candidate set.

        Returns:
            ``Q`` dicts in the shape of :class:`~dpr_dist.serve.api.ScoreResponse`
            (without ``request_id``): ``rank`` is 1 + the number of candidate packages
            (other than the proposed one) with a higher score.
        """
        if len(packages) != prepared.num_rows:
            raise ValueError(f"score: {len(packages)} packages for {prepared.num_rows} patients")
        r = self.rank(prepared)
        b = self.bundle
        csr = packages_to_csr([np.asarray(p, np.int64) for p in packages], "packages")
        graphs = candidate_graphs(csr, b.relation, b.cooc, b.threshold)
        owner = torch.arange(len(packages))
        u = r.u
        if self.device is not None:
            graphs, owner, u = graphs.to(self.device), owner.to(self.device), u.to(self.device)
        with torch.no_grad():
            mine = self.model.score(u, graphs, owner).double().cpu().numpy()
        out = []
        explanations = self.explain(r.u, [np.asarray(p, np.int64) for p in packages])
        for i, pkg in enumerate(packages):
            pkg = np.asarray(pkg, np.int64)
            higher, best = 0, None
            for s in r.order[i]:
                if r.cands.neighbors[i, s] < 0:
                    continue
                cand = self._package(r, i, s)
                if best is None:
                    best = {"rank": 1, "drugs": self._names(cand), "score": float(r.grid[i, s]),
                            "origin": "candidate", "similarity": float(r.cands.similarity[i, s]), "rules": []}
                if r.grid[i, s] > mine[i] and not np.array_equal(np.sort(cand), np.sort(pkg)):
                    higher += 1
            out.append({**self._head(prepared, i), "drugs": self._names(pkg), "score": float(mine[i]),
                        "rank": higher + 1, "candidates": int(r.cands.counts[i]), "best_candidate": best,
                        "explanation": explanations[i]})
        return out

    def generate(self, prepared: pa.Table, top_k: Sequence[int | None] | int | None = None) -> list[dict[str, Any]]:
        """Candidate sets extended by the generation heuristic (paper 6), ranked and explained.

        Returns:
            ``Q`` dicts in the shape of :class:`~dpr_dist.serve.api.RecommendResponse`;
            each package has ``origin`` ``candidate``, ``s2`` or ``s3`` and the rules
            that produced it.
        """
        b = self.bundle
        r = self.rank(prepared)
        with torch.no_grad():
            l_scores = torch.cat([self.ncf.rank_drugs(r.u_ncf[s: s + 256].to(self.ncf.drug_emb.weight.device)).cpu()
                                  for s in range(0, len(r.cands), 256)])
        l_rank = ranks_from_scores(l_scores.double().numpy())
        generated = generate_batch(r.cands.packages, l_rank, self._L_rank, b.relation, b.cooc, self.generation)
        owner, csr = flatten(generated)
        graphs = candidate_graphs(csr, b.relation, b.cooc, b.threshold)
        own, u = torch.from_numpy(owner), r.u
        if self.device is not None:
            graphs, own, u = graphs.to(self.device), own.to(self.device), u.to(self.device)
        with torch.no_grad():
            scores = self.model.score(u, graphs, own).double().cpu().numpy() if len(owner) else np.zeros(0)
        ks = self._ks(top_k, len(generated))
        out, start, firsts = [], 0, []
        for i, pkgs in enumerate(generated):
            s = scores[start: start + len(pkgs)]
            start += len(pkgs)
            order = np.argsort(-s, kind="stable")[: ks[i]]
            items = []
            for j, c in enumerate(order):
                g = pkgs[c]
                sim = r.cands.similarity[i, g.source] if 0 <= g.source < r.cands.neighbors.shape[1] else None
                items.append({"rank": j + 1, "drugs": self._names(g.drugs), "score": float(s[c]),
                              "origin": "candidate" if g.origin == "s1" else g.origin,
                              "similarity": None if sim is None or not np.isfinite(sim) else float(sim),
                              "rules": [self._rule(x) for x in g.rules]})
            if len(order):
                firsts.append((i, pkgs[order[0]].drugs))
            out.append({**self._head(prepared, i), "candidates": len(pkgs), "packages": items, "explanation": None})
        if firsts:
            rows = torch.tensor([i for i, _ in firsts])
            for (i, _), expl in zip(firsts, self.explain(r.u[rows], [p for _, p in firsts])):
                out[i]["explanation"] = expl
        return out

    def handle(self, kind: str, requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | InputError]:
        """Answer a batch of API requests of one kind in one pass over the models.

        Args:
            kind: ``recommend``, ``score`` or ``generate``.
            requests: Dicts in the shape of the request models of
                :mod:`dpr_dist.serve.api` (``patient``, plus ``top_k`` or ``drugs``).

        Returns:
            One entry per request, in order: the response dict, or the
            :class:`InputError` of a request the model cannot take (the others are
            answered regardless).
        """
        if kind not in ("recommend", "score", "generate"):
            raise ValueError(f"handle: unknown request kind {kind!r}")
        out: list[dict[str, Any] | InputError | None] = [None] * len(requests)
        if not requests:
            return []
        prepared, rejects = self.prepare(self.patients_table([r["patient"] for r in requests]))
        for rej in rejects.to_pylist():
            out[rej["row"]] = InputError(f"patient.{rej['field']}", rej["reason"], rej["record_id"])
        rows = prepared["row"].to_numpy()
        packages: list[np.ndarray] = []
        if kind == "score":
            keep = []
            for j, row in enumerate(rows):
                try:
                    packages.append(self.resolve_drugs(requests[row]["drugs"], "drugs",
                                                       requests[row]["patient"].get("record_id")))
                    keep.append(j)
                except InputError as err:
                    out[row] = err
            prepared, rows = prepared.take(pa.array(keep, pa.int64())), rows[keep]
        if len(rows):
            if kind == "score":
                answers = self.score(prepared, packages)
            else:
                ks = [requests[row].get("top_k") for row in rows]
                answers = self.recommend(prepared, ks) if kind == "recommend" else self.generate(prepared, ks)
            for row, ans in zip(rows, answers):
                out[row] = ans
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ helpers
    def _ks(self, top_k: Sequence[int | None] | int | None, n: int) -> list[int]:
        if top_k is None or isinstance(top_k, int):
            return [int(top_k or self.top_k)] * n
        return [int(k or self.top_k) for k in top_k]

    def _names(self, ids: np.ndarray) -> list[str]:
        return [str(self.names[i]) for i in np.asarray(ids, np.int64)]

    def _rule(self, rule: Mapping[str, Any]) -> dict[str, Any]:
        out = {"rule": str(rule["rule"]), "drug": str(self.names[int(rule["drug"])]), "partner": None}
        if rule.get("partner") is not None:
            out["partner"] = str(self.names[int(rule["partner"])])
        return out

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/model`` shows: name, version, sizes, data manifest, metrics."""
        b = self.bundle
        return {"name": b.model_name, "version": self.version, "model_dir": str(b.path),
                "created": b.info.get("created"), "loaded_at": self.loaded_at, "num_drugs": b.num_drugs,
                "num_doc_words": b.num_doc_words, "training_patients": len(b.index), "threshold": b.threshold,
                "neighbors": self.neighbors, "top_k": self.top_k, "descriptions": self.descriptions.source,
                "manifest": b.manifest, "metrics": b.metrics}


def generation_config(overrides: Mapping[str, Any] | None, threshold: float) -> GenerationConfig:
    """:class:`GenerationConfig` with ``low_cooc`` = the graph threshold, then ``overrides``."""
    base = GenerationConfig(low_cooc=min(threshold, 0.5))
    return replace(base, **dict(overrides or {}))
