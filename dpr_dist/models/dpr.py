"""DPR-WG and DPR-AG (paper 4.3), the GNN baseline and the ablations of paper 5.2.2.

One :class:`DPR` module covers every package-graph model; a
:class:`~dpr_dist.models.variants.Variant` (chosen by name, see the table of
:mod:`dpr_dist.models.variants`) switches its parts on and off.

Only the modules a variant uses are created, so every parameter takes part in the graph at
every step (as ``DistributedDataParallel`` without ``find_unused_parameters`` expects).

The class holds the parameters; two modules compute with them. :mod:`dpr_dist.models.reference`
is the clear reference implementation: every per-node and per-edge quantity computed per
graph, the equations in the paper's order. With ``model.fast`` (the default,
``ModelConfig.fast``) :meth:`DPR.package_embedding`, :meth:`DPR.score` and :meth:`DPR.loss`
run :mod:`dpr_dist.models.fast` instead: the same function with less work, on index maps
(:meth:`DPR.plan`) built on the CPU. Setting ``model.fast = False`` selects the reference;
:meth:`DPR.explain` and :meth:`DPR.edge_factors` always use it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from dpr_dist.config import ModelConfig
from dpr_dist.models import fast as fast_path
from dpr_dist.models import reference
from dpr_dist.models.batch import GraphInput, PatientBatch, check_ids, graph_index
from dpr_dist.models.encoder import PatientEncoder
from dpr_dist.models.fast import FastPlan
from dpr_dist.models.layers import MLP, AGConv, GatedReadout, WGConv, kaiming_init
from dpr_dist.models.ncf import NCF
from dpr_dist.models.variants import VARIANTS


class DPR(nn.Module):
    """Drug Package Recommendation on package graphs (paper 4.3).

    Args:
        cfg: Dimensions: encoder (``mlp_out``, ``char_dim``, ``lstm_hidden``), ``drug_dim``
            (node and package-embedding size), ``hidden`` (every MLP), ``edge_dim``
            (AG edge attributes), ``gnn_layers``, ``ce_weight``, ``aggr``. The context MLP of eq. 10
            outputs ``mlp_out`` values.
        num_drugs: ``M``.
        num_doc_words: Disease-document vocabulary size.
        num_chars: Character vocabulary size (padding id 0 included).
        variant: A name of :data:`~dpr_dist.models.variants.VARIANTS` (``cfg.name`` when None).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        num_drugs: int,
        num_doc_words: int,
        num_chars: int,
        variant: str | None = None,
    ) -> None:
        super().__init__()
        name = cfg.name if variant is None else variant
        if name not in VARIANTS:
            raise ValueError(f"DPR: unknown variant {name!r}; expected one of {sorted(VARIANTS)}")
        if cfg.gnn_layers < 1:
            raise ValueError(f"DPR: model.gnn_layers must be >= 1, got {cfg.gnn_layers}")
        if num_drugs < 1:
            raise ValueError(f"DPR: num_drugs must be >= 1, got {num_drugs}")
        self.variant = VARIANTS[name]
        self.fast = bool(cfg.fast)  # route through dpr_dist.models.fast (False: the reference)
        self.num_drugs = num_drugs
        self.ce_weight = cfg.ce_weight
        self.aggr = cfg.aggr  # eqs. 12 / 19 sum the messages into a node, or their mean
        self.type_targets, self.type_pairs = cfg.type_targets, cfg.type_pairs  # models/type_targets.py
        self.type_src = self.type_dst = self.type_rel = None  # R's labelled pairs (set_type_pairs)
        dim, hid = cfg.drug_dim, cfg.hidden
        self.encoder = PatientEncoder(cfg, num_doc_words, num_chars)  # eqs. 1-3
        self.drug_emb = nn.Embedding(num_drugs, dim)
        u_dim = self.encoder.out_dim
        v = self.variant
        if v.has_mask:  # sigma(MLP(u)): over drug embeddings (eq. 9) or edge attributes (eq. 17)
            self.mask_mlp = MLP(u_dim, hid, dim if v.graph == "wg" else cfg.edge_dim)
        if v.context:  # c_vu = tanh(a^T MLP([d^_u || d^_v])) (eq. 10)
            self.context_mlp = MLP(2 * dim, hid, cfg.mlp_out)
            self.context_a = nn.Linear(cfg.mlp_out, 1, bias=False)
        if v.graph == "ag":  # e_vu = MLP([d_v || d_u]) (eq. 16)
            self.edge_mlp = MLP(2 * dim, hid, cfg.edge_dim)
            convs = [AGConv(dim, cfg.edge_dim, hid, cfg.aggr) for _ in range(cfg.gnn_layers)]
        else:
            convs = [WGConv(dim, hid, cfg.aggr) for _ in range(cfg.gnn_layers)]
        self.convs = nn.ModuleList(convs)
        if v.type_loss:  # logits e^T Q, Q = type_proj.weight.T in R^{edge_dim x 3} (eq. 21)
            self.type_proj = nn.Linear(cfg.edge_dim, 3, bias=False)
        self.readout = GatedReadout(dim, hid, dim)  # eq. 14
        self.predict = MLP(u_dim + dim, hid, 1)  # MLP([u || g]) (eq. 15)
        kaiming_init(self)

    # ------------------------------------------------------------------ patients
    def encode(self, p: PatientBatch) -> Tensor:
        """Patient embeddings ``u`` ``[B, D_u]`` (eq. 3)."""
        return self.encoder(p)

    def mask(self, u: Tensor) -> Tensor:
        """Mask vectors ``sigma(MLP(u))`` (eqs. 9, 17; Figure 8 of the paper).

        Args:
            u: ``[B, D_u]``.

        Returns:
            ``[B, drug_dim]`` (WG) or ``[B, edge_dim]`` (AG), in ``(0, 1)``.
        """
        if not self.variant.has_mask:
            raise ValueError(f"DPR: variant {self.variant.name!r} has no mask layer")
        return torch.sigmoid(self.mask_mlp(u))

    @property
    def Q(self) -> Tensor:  # noqa: N802 (the paper's name)
        """Transfer matrix ``Q`` ``[edge_dim, 3]`` of eq. 21 (variants with the type loss)."""
        if not self.variant.type_loss:
            raise ValueError(f"DPR: variant {self.variant.name!r} has no transfer matrix Q")
        return self.type_proj.weight.T

    # ------------------------------------------------------------------ graphs
    def check_graphs(self, graphs: GraphInput, owner: Tensor, num_patients: int) -> None:
        """Validate package graphs and their owners.

        Raises:
            ValueError: naming the field (and graph or row) that is wrong.
        """
        _, num_graphs = graph_index(graphs)
        if owner.dim() != 1 or owner.size(0) != num_graphs:
            raise ValueError(
                f"DPR: owner must be [{num_graphs}] (one per graph), got {tuple(owner.shape)}"
            )
        check_ids(owner, num_patients, "DPR: owner (patient row per graph)")
        check_ids(graphs.drug, self.num_drugs, "DPR: graphs.drug (node)")
        needed = ["edge_w"] if self.variant.initial_weights else []
        needed += ["edge_rel"] if self.variant.type_loss else []
        for key in needed:
            val = getattr(graphs, key, None)
            if val is None or val.size(0) != graphs.edge_index.size(1):
                raise ValueError(
                    f"DPR: graphs.{key} must be [E] (one per edge) for {self.variant.name!r}"
                )
        if self.variant.type_loss and graphs.edge_rel.numel():
            bad = (graphs.edge_rel < -1) | (graphs.edge_rel > 2)
            if bool(bad.any()):
                edge = int(bad.nonzero()[0, 0])
                raise ValueError(f"DPR: graphs.edge_rel: edge {edge} is not one of -1, 0, 1, 2")

    def plan(
        self, graphs: GraphInput, owner: Tensor, num_patients: int, num_negatives: int | None = None
    ) -> FastPlan:
        """Validated index maps of the fast path for these graphs, built on the CPU.

        Build it where the batch is made (before ``.to(device)``; then ``plan.to(device)``)
        and pass it as ``plan=`` to :meth:`loss` / :meth:`score` / :meth:`package_embedding`:
        the forward pass then needs no host synchronisation. Without one they build it
        (copying the graphs to the CPU when they are elsewhere).

        Args:
            graphs: The package graphs.
            owner: ``[G]`` patient row of each graph.
            num_patients: ``B``.
            num_negatives: ``K`` for :meth:`loss` (checks the patient-major layout); None
                for scoring.
        """
        group = None if num_negatives is None else 1 + int(num_negatives)
        return fast_path.build_plan(graphs, owner, self.variant, num_patients, self.num_drugs, group)

    def package_embedding(
        self, u: Tensor, graphs: GraphInput, owner: Tensor, plan: FastPlan | None = None
    ) -> Tensor:
        """Package embeddings ``g`` (eq. 14), each graph embedded under its owner's mask.

        Args:
            u: ``[B, D_u]`` patient embeddings.
            graphs: ``G`` package graphs (see :mod:`dpr_dist.models.batch`).
            owner: ``[G]`` int64 row of ``u`` of each graph.
            plan: Fast path only: :meth:`plan` of ``(graphs, owner)`` (built when None).

        Returns:
            ``[G, drug_dim]``.
        """
        if self.fast:
            plan = self.plan(graphs, owner, u.size(0)) if plan is None else plan
            return fast_path.package_embedding(self, u, plan)
        return reference.forward_graphs(self, u, graphs, owner)[0]

    def score(self, u: Tensor, graphs: GraphInput, owner: Tensor, plan: FastPlan | None = None) -> Tensor:
        """Scores ``MLP([u_owner || g])`` ``[G]`` of each package for its owner (eq. 15)."""
        if self.fast:
            plan = self.plan(graphs, owner, u.size(0)) if plan is None else plan
            return fast_path.score(self, u, plan)
        return reference.predict(self, u, self.package_embedding(u, graphs, owner), owner)

    # ------------------------------------------------------------------ training
    def forward(
        self, p: PatientBatch, graphs: Batch, owner: Tensor, num_negatives: int,
        plan: FastPlan | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The training loss, :meth:`loss` (so that ``DistributedDataParallel(dpr)(...)`` runs it)."""
        return self.loss(p, graphs, owner, num_negatives, plan)

    def loss(
        self, p: PatientBatch, graphs: Batch, owner: Tensor, num_negatives: int,
        plan: FastPlan | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Package BPR loss (eq. 15), plus the interaction-type cross-entropy for AG (eq. 21).

        Layout (patient-major): with ``K = num_negatives``, graph ``i * (1 + K)`` is the
        positive package of patient ``i`` (row ``i`` of ``p``) and graphs
        ``i * (1 + K) + 1 .. i * (1 + K) + K`` are its ``K`` negative packages; so
        ``owner`` must equal ``arange(B).repeat_interleave(1 + K)``.

        * BPR: ``-ln sigma(MLP([u_i || g_i]) - MLP([u_i || g_j]))`` averaged over the
          ``B * K`` (positive, negative) pairs.
        * CE (variants with ``type_loss``): ``-ln softmax(e_vu^T Q)[R_vu]`` with the
          unmasked ``e_vu`` (eq. 16), averaged over the edges of the positive graphs
          whose relation is labelled (``edge_rel != -1``), times ``model.ce_weight``.
          Zero when there is none. Negative packages' edges never enter it. With
          ``model.type_targets: relation``, over the labelled pairs of ``R`` instead
          (:mod:`dpr_dist.models.type_targets`).

        The L2 term ``lambda ||Theta||^2`` is left to the trainer
        (:func:`dpr_dist.models.layers.l2_penalty`).

        Args:
            p: ``B`` patients.
            graphs: ``B * (1 + K)`` package graphs in the layout above.
            owner: ``[B * (1 + K)]`` int64.
            num_negatives: ``K >= 1``.
            plan: Fast path only: :meth:`plan` of ``(graphs, owner, B, K)`` (built when
                None); the layout is then checked when the plan is built.

        Returns:
            ``(loss, stats)``; ``stats`` holds detached scalar tensors: ``bpr``,
            ``pair_acc`` (fraction of pairs with the positive scored higher) and, with the
            type loss, ``ce`` and ``ce_edges`` (labelled positive edges).
        """
        k = int(num_negatives)
        if k < 1:
            raise ValueError(f"DPR.loss: num_negatives must be >= 1, got {num_negatives}")
        if self.fast:
            plan = self.plan(graphs, owner, len(p), k) if plan is None else plan
            return fast_path.loss(self, p, plan, k)
        return reference.loss(self, p, graphs, owner, k)

    # ------------------------------------------------------------------ analysis
    @torch.no_grad()
    def explain(self, u: Tensor, graph: GraphInput) -> dict[str, Tensor]:
        """Per-edge explanation of one package for one patient (Tables 7 and 8 of the paper).

        Args:
            u: ``[1, D_u]`` the patient's embedding.
            graph: One package graph (a ``Data``, or a ``Batch`` holding one graph).

        Returns:
            Tensors on the model's device: ``edge_index`` ``[2, E]``, ``edge_rel`` ``[E]``
            (when the graph has it) and those of :meth:`edge_factors`: WG ``e`` (initial
            weights), ``e_hat`` (``c * e``), ``c`` ``[E]`` in ``(-1, 1)``; AG ``e`` /
            ``e_hat`` ``[E, edge_dim]``, ``type_prob`` / ``type_prob_personal`` ``[E, 3]``.

        Raises:
            ValueError: for the ``gnn`` variant (no edge attributes), or for several
                graphs / patients.
        """
        if self.variant.name == "gnn":
            raise ValueError("DPR.explain: variant 'gnn' has no edge attributes to explain")
        if u.dim() != 2 or u.size(0) != 1:
            raise ValueError(f"DPR.explain: u must be [1, D_u], got {tuple(u.shape)}")
        if graph_index(graph)[1] != 1:
            raise ValueError("DPR.explain: expected exactly one package graph")
        out = {"edge_index": graph.edge_index, **self.edge_factors(u, graph, u.new_zeros(1, dtype=torch.long))}
        if getattr(graph, "edge_rel", None) is not None:
            out["edge_rel"] = graph.edge_rel
        return out

    @torch.no_grad()
    def edge_factors(self, u: Tensor, graphs: GraphInput, owner: Tensor) -> dict[str, Tensor]:
        """The per-edge quantities of :meth:`explain` for many graphs in one pass (no gradients).

        Args:
            u: ``[B, D_u]`` patient embeddings.
            graphs: ``G`` package graphs.
            owner: ``[G]`` int64 row of ``u`` of each graph.

        Returns:
            ``e``, ``e_hat`` and (with the context factor) ``c`` of
            :func:`~dpr_dist.models.reference.forward_graphs`, plus, with ``Q``,
            ``type_prob = softmax(e^T Q)`` (non-personalized) and ``type_prob_personal =
            softmax(e^^T Q)`` (personalized) ``[E, 3]`` over (none, synergism, antagonism).
        """
        _, aux = reference.forward_graphs(self, u, graphs, owner)
        if self.variant.type_loss:
            aux["type_prob"] = torch.softmax(self.type_proj(aux["e"]), dim=-1)
            aux["type_prob_personal"] = torch.softmax(self.type_proj(aux["e_hat"]), dim=-1)
        return aux

    # ------------------------------------------------------------------ pre-training
    def load_pretrained(self, ncf: NCF) -> None:
        """Initialize the patient encoder and drug embeddings from a pre-trained NCF (4.1).

        Raises:
            ValueError: naming the first parameter whose shape differs.
        """
        mine = {f"encoder.{k}": t for k, t in self.encoder.state_dict().items()}
        mine["drug_emb.weight"] = self.drug_emb.weight
        theirs = {f"encoder.{k}": t for k, t in ncf.encoder.state_dict().items()}
        theirs["drug_emb.weight"] = ncf.drug_emb.weight
        for key, t in mine.items():
            if key not in theirs or theirs[key].shape != t.shape:
                got = tuple(theirs[key].shape) if key in theirs else "missing"
                raise ValueError(
                    f"DPR.load_pretrained: {key} is {tuple(t.shape)} here, {got} in the NCF"
                )
        with torch.no_grad():
            self.encoder.load_state_dict(ncf.encoder.state_dict())
            self.drug_emb.weight.copy_(ncf.drug_emb.weight)
