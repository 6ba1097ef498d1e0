"""NN baseline (paper 5.1.1): the package of the nearest training patient.

"This method utilizes the pretrained patient embeddings based on NCF, and returns the
drug package corresponding to the Nearest Neighbor (NN) by calculating the cosine
similarity of patient embeddings."

The nearest neighbour is already found by the candidate search: the evaluator's
candidate sets (:meth:`~dpr_dist.eval.candidates.CandidateIndex.query`) hold the
packages of the most cosine-similar training patients under the pre-trained NCF
encoder, most similar first, and :meth:`~dpr_dist.eval.candidates.Candidates.pick`
breaks ties toward the more similar neighbour. So :class:`NearestNeighbor` scores every
candidate the same (0): picking from its scores returns the first candidate, the nearest
neighbour's package. The design needs nothing from the graphs or the evaluator beyond
that documented tie rule; any other consumer of :meth:`NearestNeighbor.score` must also
break ties by candidate order (a stable ``argmax``), not by a ``topk`` whose tie order is
unspecified.

NN has no training: ``trainable`` is False (the trainer skips BPR) and :meth:`loss`
raises. Its encoder is the NCF's (:meth:`load_pretrained`), so ``encode`` gives the
embeddings the candidates were searched with.
"""

from __future__ import annotations

from torch import Tensor
from torch_geometric.data import Batch

from dpr_dist.config import ModelConfig
from dpr_dist.models.baselines.base import PackageBaseline
from dpr_dist.models.batch import GraphInput, PatientBatch


class NearestNeighbor(PackageBaseline):
    """Nearest training patient's package: a constant score over a similarity-ordered candidate set.

    Args:
        cfg: The encoder's dimensions.
        num_drugs: ``M``.
        num_doc_words: Disease-document vocabulary size.
        num_chars: Character vocabulary size (padding id 0 included).
    """

    name = "nn"
    trainable = False

    def __init__(self, cfg: ModelConfig, num_drugs: int, num_doc_words: int, num_chars: int) -> None:
        super().__init__(cfg, num_drugs, num_doc_words, num_chars)

    def package_embedding(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> Tensor:
        """The owner's embedding ``u[owner]`` ``[G, D_u]``: NN represents a package by the patient it is scored for.

        A package graph does not say which training patient it came from, so NN has no
        package embedding of its own; this keeps the shared interface.
        """
        self.check_graphs(graphs, owner, u.size(0))
        return u[owner]

    def score(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> Tensor:
        """Zero ``[G]`` for every candidate (the first, most similar, candidate wins the tie).

        Args:
            u: ``[B, D_u]`` patient embeddings.
            graphs: ``G`` package graphs.
            owner: ``[G]`` int64 row of ``u`` of each graph.
        """
        _, num_graphs = self.check_graphs(graphs, owner, u.size(0))
        return u.new_zeros(num_graphs)

    def loss(
        self, p: PatientBatch, graphs: Batch, owner: Tensor, num_negatives: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """NN is not trained (``trainable`` is False).

        Raises:
            RuntimeError: always; the trainer must skip models with ``trainable = False``.
        """
        raise RuntimeError("NearestNeighbor has no training (trainable = False); the trainer must skip BPR for 'nn'")
