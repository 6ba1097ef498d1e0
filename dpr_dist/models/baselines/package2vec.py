"""Package2vec baseline (paper 5.1.1): item2vec drug vectors averaged into a package vector.

Item2vec (Barkan and Koenigstein 2016) is skip-gram with negative sampling (SGNS) where a
"sentence" is a set of items: every pair of drugs prescribed together is a (target,
context) pair. :meth:`Package2vec.fit_packages` trains it once on the training packages
with gensim's :class:`~gensim.models.Word2Vec` (``sg=1``, a window as long as the
longest package and ``shrink_windows=False``, so every co-prescribed pair counts
whatever the order of the drugs). The package embedding is the mean of its drugs' unit
item vectors, and the package is scored for a patient in the NCF framework with BPR, as
in the paper: ``s = MLP([u || g])``.

The item vectors are fixed after the fit (a buffer, saved in the state dict); BPR trains
the patient encoder and the scoring MLP.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.utils import scatter

from dpr_dist.config import ModelConfig
from dpr_dist.models.baselines.base import PackageBaseline, check_packages
from dpr_dist.models.batch import GraphInput
from dpr_dist.models.layers import MLP, kaiming_init


class Package2vec(PackageBaseline):
    """Item2vec package embeddings scored by ``MLP([u || g])`` (paper 5.1.1).

    Args:
        cfg: ``drug_dim`` (item-vector size), ``hidden`` (scoring MLP) and the encoder's.
        num_drugs: ``M``.
        num_doc_words: Disease-document vocabulary size.
        num_chars: Character vocabulary size (padding id 0 included).
        epochs: SGNS passes over the training packages.
        negative: Negative samples per (target, context) pair.
        sample: Down-sampling threshold of frequent drugs (word2vec's ``sample``; 0 = off).

    Attributes:
        item_vec: Buffer ``[M, drug_dim]``, unit item2vec vectors (zero for drugs absent
            from the training packages).
        fitted: Bool buffer, True once :meth:`fit_packages` ran (or a fitted state dict
            was loaded).
        predict: ``MLP([u || g]) -> 1``.
    """

    name = "package2vec"

    def __init__(
        self,
        cfg: ModelConfig,
        num_drugs: int,
        num_doc_words: int,
        num_chars: int,
        *,
        epochs: int = 5,
        negative: int = 5,
        sample: float = 1e-3,
    ) -> None:
        super().__init__(cfg, num_drugs, num_doc_words, num_chars)
        if epochs < 1 or negative < 1 or sample < 0:
            raise ValueError(
                f"Package2vec: need epochs >= 1, negative >= 1, sample >= 0; got {epochs}, {negative}, {sample}"
            )
        self.dim = cfg.drug_dim
        self.epochs, self.negative, self.sample = epochs, negative, sample
        self.register_buffer("item_vec", torch.zeros(num_drugs, cfg.drug_dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.predict = MLP(self.encoder.out_dim + cfg.drug_dim, cfg.hidden, 1)
        kaiming_init(self)

    def fit_packages(self, packages: Sequence[np.ndarray], num_drugs: int, seed: int) -> None:
        """Train item2vec on the training packages and store the unit item vectors.

        Deterministic given ``seed`` (one gensim worker thread).

        Args:
            packages: ``N`` training packages (1-D drug-id arrays).
            num_drugs: ``M`` (must equal the model's).
            seed: Seed of the vector initialization and the sampling.

        Raises:
            ValueError: on a different ``num_drugs`` or bad packages (naming the package).
        """
        from gensim.models import Word2Vec

        if num_drugs != self.num_drugs:
            raise ValueError(f"Package2vec.fit_packages: num_drugs {num_drugs} != the model's {self.num_drugs}")
        pkgs = check_packages(packages, num_drugs, "Package2vec.fit_packages")
        sentences = [[str(d) for d in p.tolist()] for p in pkgs]
        w2v = Word2Vec(
            sentences,
            vector_size=self.dim,
            window=max(max(p.size for p in pkgs), 1),
            shrink_windows=False,
            min_count=1,
            sg=1,
            hs=0,
            negative=self.negative,
            sample=self.sample,
            epochs=self.epochs,
            seed=int(seed) % (2**32),
            workers=1,
        )
        vec = np.zeros((num_drugs, self.dim), dtype=np.float32)
        keys = np.fromiter((int(k) for k in w2v.wv.index_to_key), dtype=np.int64)
        vec[keys] = w2v.wv.vectors
        norm = np.linalg.norm(vec, axis=1, keepdims=True)
        vec = np.divide(vec, norm, out=np.zeros_like(vec), where=norm > 0)
        with torch.no_grad():
            self.item_vec.copy_(torch.from_numpy(vec))
            self.fitted.fill_(True)

    def package_embedding(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> Tensor:
        """Mean unit item vector of each package.

        Args:
            u: ``[B, D_u]`` patient embeddings (only checked against ``owner``).
            graphs: ``G`` package graphs (``drug`` ``[N]``).
            owner: ``[G]`` int64 row of ``u`` of each graph.

        Returns:
            ``[G, drug_dim]`` (zero for a graph without nodes).

        Raises:
            RuntimeError: before :meth:`fit_packages`.
        """
        if not bool(self.fitted):
            raise RuntimeError("Package2vec: item vectors are not fitted; call fit_packages(train packages) first")
        batch, num_graphs = self.check_graphs(graphs, owner, u.size(0))
        return scatter(self.item_vec[graphs.drug], batch, dim=0, dim_size=num_graphs, reduce="mean")

    def score(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> Tensor:
        """Scores ``MLP([u_owner || g])`` ``[G]``."""
        g = self.package_embedding(u, graphs, owner)
        return self.predict(torch.cat([u[owner], g], dim=-1)).squeeze(-1)
