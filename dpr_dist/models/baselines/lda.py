"""LDA baseline (paper 5.1.1): a package's topic proportions as its embedding.

Each training package is a document whose words are its drugs (a multi-hot row).
:meth:`LDA.fit_packages` fits scikit-learn's
:class:`~sklearn.decomposition.LatentDirichletAllocation` with ``n_components =
model.drug_dim`` topics once; the fitted topic-word expectations ``exp(E[log beta])``
and the document-topic prior are kept as buffers (so the state dict restores them).

The topic proportions ``theta`` of any package -- also one never seen in training, as
in the candidate sets -- come from the same variational E-step as scikit-learn's
``transform`` (same initialization, update and per-document stopping rule), run in torch
over all graphs of a batch at once (:meth:`LDA.topics`). The package is scored in the
framework of Package2vec: ``s = MLP([u || theta])`` with BPR; the topics stay fixed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch_geometric.utils import scatter

from dpr_dist.config import ModelConfig
from dpr_dist.models.baselines.base import PackageBaseline, check_packages
from dpr_dist.models.batch import GraphInput, check_ids, graph_index
from dpr_dist.models.layers import MLP, kaiming_init


#: Guard of ``norm_phi`` (scikit-learn's, for the float64 multi-hot it fits on).
_EPS = float(np.finfo(np.float64).eps)


def _exp_dirichlet(gamma: Tensor) -> Tensor:
    """``exp(E[log theta])`` of Dirichlet rows ``gamma`` ``[G, K]``."""
    return torch.exp(torch.digamma(gamma) - torch.digamma(gamma.sum(dim=1, keepdim=True)))


class LDA(PackageBaseline):
    """LDA topic vectors of packages scored by ``MLP([u || theta])`` (paper 5.1.1).

    Args:
        cfg: ``drug_dim`` (number of topics ``K``), ``hidden`` and the encoder's.
        num_drugs: ``M``.
        num_doc_words: Disease-document vocabulary size.
        num_chars: Character vocabulary size (padding id 0 included).
        max_iter: Passes of the (batch) LDA fit.
        max_fit_packages: Fit on at most this many training packages, a seeded random
            subset (None = all). scikit-learn's E-step loops over documents in Python,
            about 1 ms per package and pass, so the default 20,000 keeps the fit near
            3 minutes on one core at any scale (paper: 127k training packages; 20k
            packages still see each of 1,428 drugs about 250 times on average).
        n_jobs: scikit-learn's ``n_jobs`` of the fit (None = 1 process).
        max_doc_update_iter: E-step iterations per package at most (scikit-learn's).
        mean_change_tol: E-step stopping tolerance on the mean change of ``gamma``.

    Attributes:
        exp_word_topic: Buffer ``[M, K]``, ``exp(E[log beta])`` transposed.
        doc_topic_prior: Scalar buffer, the Dirichlet prior ``alpha`` of ``theta``.
        fitted: Bool buffer, True once :meth:`fit_packages` ran (or a fitted state dict
            was loaded).
        predict: ``MLP([u || theta]) -> 1``.
    """

    name = "lda"

    def __init__(
        self,
        cfg: ModelConfig,
        num_drugs: int,
        num_doc_words: int,
        num_chars: int,
        *,
        max_iter: int = 10,
        max_fit_packages: int | None = 20000,
        n_jobs: int | None = None,
        max_doc_update_iter: int = 100,
        mean_change_tol: float = 1e-3,
    ) -> None:
        super().__init__(cfg, num_drugs, num_doc_words, num_chars)
        if max_iter < 1 or max_doc_update_iter < 1 or mean_change_tol <= 0 or (max_fit_packages or 1) < 1:
            raise ValueError(
                "LDA: need max_iter >= 1, max_doc_update_iter >= 1, mean_change_tol > 0, max_fit_packages "
                f">= 1; got {max_iter}, {max_doc_update_iter}, {mean_change_tol}, {max_fit_packages}"
            )
        self.num_topics = cfg.drug_dim
        self.max_fit_packages, self.n_jobs = max_fit_packages, n_jobs
        self.max_iter, self.max_doc_update_iter, self.mean_change_tol = max_iter, max_doc_update_iter, mean_change_tol
        self.register_buffer("exp_word_topic", torch.zeros(num_drugs, cfg.drug_dim))
        self.register_buffer("doc_topic_prior", torch.zeros(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.predict = MLP(self.encoder.out_dim + cfg.drug_dim, cfg.hidden, 1)
        kaiming_init(self)

    def fit_packages(self, packages: Sequence[np.ndarray], num_drugs: int, seed: int) -> None:
        """Fit LDA on the training packages' drug multi-hot and store its expectations.

        Args:
            packages: ``N`` training packages (1-D drug-id arrays).
            num_drugs: ``M`` (must equal the model's).
            seed: Seed of the package subset and ``random_state`` of the fit (the fit is
                deterministic given it).

        Raises:
            ValueError: on a different ``num_drugs`` or bad packages (naming the package).
        """
        from sklearn.decomposition import LatentDirichletAllocation

        if num_drugs != self.num_drugs:
            raise ValueError(f"LDA.fit_packages: num_drugs {num_drugs} != the model's {self.num_drugs}")
        pkgs = check_packages(packages, num_drugs, "LDA.fit_packages")
        if self.max_fit_packages is not None and len(pkgs) > self.max_fit_packages:
            rng = np.random.default_rng(int(seed))
            keep = np.sort(rng.choice(len(pkgs), size=self.max_fit_packages, replace=False))
            pkgs = [pkgs[i] for i in keep]
        lengths = np.fromiter((p.size for p in pkgs), dtype=np.int64, count=len(pkgs))
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        x = sp.csr_array((np.ones(indptr[-1]), np.concatenate(pkgs), indptr), shape=(len(pkgs), num_drugs))
        x.sum_duplicates()
        x.data[:] = 1.0  # multi-hot: a repeated drug counts once
        lda = LatentDirichletAllocation(
            n_components=self.num_topics,
            learning_method="batch",
            max_iter=self.max_iter,
            max_doc_update_iter=self.max_doc_update_iter,
            mean_change_tol=self.mean_change_tol,
            random_state=int(seed) % (2**32),
            n_jobs=self.n_jobs,
        )
        lda.fit(x)
        with torch.no_grad():
            self.exp_word_topic.copy_(torch.from_numpy(lda.exp_dirichlet_component_.T.astype(np.float32)))
            self.doc_topic_prior.fill_(float(lda.doc_topic_prior_))
            self.fitted.fill_(True)

    @torch.no_grad()
    def topics(self, graphs: GraphInput) -> Tensor:
        """Topic proportions ``theta`` ``[G, K]`` of each package (scikit-learn's ``transform``).

        Every node counts once. Per graph: ``gamma = 1``; repeat ``norm_phi_n =
        exp(E[log theta]) . exp(E[log beta_n]) + eps``, ``gamma' = exp(E[log theta]) *
        sum_n exp(E[log beta_n]) / norm_phi_n + alpha`` until the mean absolute change of
        ``gamma`` is below ``mean_change_tol`` (that graph stops) or
        ``max_doc_update_iter``; return ``gamma / sum(gamma)``.

        Raises:
            RuntimeError: before :meth:`fit_packages`.
        """
        if not bool(self.fitted):
            raise RuntimeError("LDA: topics are not fitted; call fit_packages(train packages) first")
        check_ids(graphs.drug, self.num_drugs, "LDA.topics: graphs.drug (node)")
        batch, num_graphs = graph_index(graphs)
        beta = self.exp_word_topic[graphs.drug]  # exp(E[log beta]) of each node, [N, K]
        eps = _EPS  # not float32's eps: unseen drugs have exp(E[log beta]) near 1e-7
        gamma = beta.new_ones(num_graphs, self.num_topics)
        exp_doc = _exp_dirichlet(gamma)
        # Only the graphs still iterating are computed on: `idx` [A] are their rows,
        # `local` [N_A] the compact graph index of their nodes, `beta` [N_A, K] the nodes.
        idx, local = torch.arange(num_graphs, device=beta.device), batch
        for _ in range(self.max_doc_update_iter):
            ed = exp_doc[idx]  # [A, K]
            norm_phi = (ed[local] * beta).sum(dim=1, keepdim=True) + eps  # [N_A, 1]
            new = ed * scatter(beta / norm_phi, local, dim=0, dim_size=idx.numel(), reduce="sum")
            new = new + self.doc_topic_prior
            going = (new - gamma[idx]).abs().mean(dim=1) >= self.mean_change_tol  # [A]
            gamma[idx] = new
            exp_doc[idx] = _exp_dirichlet(new)
            if not bool(going.all()):
                if not bool(going.any()):
                    break
                node_going = going[local]
                remap = torch.cumsum(going, dim=0) - 1
                idx, local, beta = idx[going], remap[local[node_going]], beta[node_going]
        return gamma / gamma.sum(dim=1, keepdim=True)

    def package_embedding(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> Tensor:
        """Topic proportions ``theta`` ``[G, K]`` of each package (see :meth:`topics`).

        Args:
            u: ``[B, D_u]`` patient embeddings (only checked against ``owner``).
            graphs: ``G`` package graphs (``drug`` ``[N]``).
            owner: ``[G]`` int64 row of ``u`` of each graph.
        """
        self.check_graphs(graphs, owner, u.size(0))
        return self.topics(graphs)

    def score(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> Tensor:
        """Scores ``MLP([u_owner || theta])`` ``[G]``."""
        theta = self.package_embedding(u, graphs, owner)
        return self.predict(torch.cat([u[owner], theta], dim=-1)).squeeze(-1)
