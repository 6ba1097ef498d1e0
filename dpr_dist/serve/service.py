"""The API's answers: recommend, score and generate for a batch of patients, without Ray.

:class:`DPRService` is a :class:`~dpr_dist.serve.model.LoadedModel` (load a model
directory, prepare patients, rank candidate sets, explain packages) that answers, for a
batch of patients at a time:

* :meth:`~DPRService.recommend` -- the top-``k`` packages of each patient's candidate set
  (packages of the ``eval.neighbors`` most similar training patients, paper 5.1.1) ranked
  by the package model, with an explanation of the first;
* :meth:`~DPRService.score` -- the score of a proposed package, its rank against the
  candidate set and its explanation;
* :meth:`~DPRService.generate` -- the candidate set extended by the package-generation
  heuristic (paper 6, :mod:`dpr_dist.eval.generation`), ranked and explained;
* :meth:`~DPRService.handle` -- a batch of API requests of one kind, each answered or
  refused with its :class:`~dpr_dist.serve.inputs.InputError`.

:meth:`~dpr_dist.serve.model.LoadedModel.pick` gives only the first package and its score
(batch scoring). The order is ``rank_by``'s (:attr:`~dpr_dist.config.ServeConfig.rank_by`):
best score first, the choice of :func:`dpr_dist.eval.evaluate.pick_packages`; or highest
expected F1 first (each package then also carries its ``expected_f1``), the choice of
``dpr evaluate --mbr T``. The ``rank`` of a proposed package counts the candidates that
score higher either way; its ``best_candidate`` is the first in ``rank_by`` order.

The Ray Serve deployment (:mod:`dpr_dist.serve.app`), the plain FastAPI baseline and the
batch scorer (:mod:`dpr_dist.score.batch`) all call this class.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import torch

from dpr_dist.eval.evaluate import candidate_graphs
from dpr_dist.eval.generation import GenerationConfig, flatten, generate_batch, ranks_from_scores
from dpr_dist.eval.generation_eval import as_candidates
from dpr_dist.eval.mbr import expected_f1
from dpr_dist.eval.package_csr import packages_to_csr
from dpr_dist.serve.inputs import InputError
from dpr_dist.serve.model import LoadedModel, Ranked

log = logging.getLogger(__name__)


class DPRService(LoadedModel):
    """A loaded model directory answering recommendation requests for batches of patients.

    Constructed and loaded as :class:`~dpr_dist.serve.model.LoadedModel` (same arguments).
    """

    def _package(self, r: Ranked, i: int, slot: int) -> np.ndarray:
        row = r.cands.neighbors[i, slot]
        return r.cands.pkg_indices[r.cands.pkg_indptr[row]: r.cands.pkg_indptr[row + 1]]

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
                         "expected_f1": None if r.expected is None else float(r.expected[i, s]),
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
                            "expected_f1": None if r.expected is None else float(r.expected[i, s]),
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
        key = (expected_f1(as_candidates(generated)[0], scores, self.temperature)  # flat order: flatten()'s
               if self.rank_by == "expected_f1" else None)
        ks = self._ks(top_k, len(generated))
        out, start, firsts = [], 0, []
        for i, pkgs in enumerate(generated):
            s = scores[start: start + len(pkgs)]
            e = None if key is None else key[start: start + len(pkgs)]
            start += len(pkgs)
            order = np.argsort(-(s if e is None else e), kind="stable")[: ks[i]]
            items = []
            for j, c in enumerate(order):
                g = pkgs[c]
                sim = r.cands.similarity[i, g.source] if 0 <= g.source < r.cands.neighbors.shape[1] else None
                items.append({"rank": j + 1, "drugs": self._names(g.drugs), "score": float(s[c]),
                              "expected_f1": None if e is None else float(e[c]),
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


def generation_config(overrides: Mapping[str, Any] | None, threshold: float) -> GenerationConfig:
    """:class:`GenerationConfig` with ``low_cooc`` = the graph threshold, then ``overrides``."""
    base = GenerationConfig(low_cooc=min(threshold, 0.5))
    return replace(base, **dict(overrides or {}))
