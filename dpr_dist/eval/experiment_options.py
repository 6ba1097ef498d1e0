"""Options of ``dpr experiment`` (:mod:`dpr_dist.eval.experiments`) and their command line.

Kept free of heavy imports so that ``dpr --help`` stays fast: the model registry and the
group parser are imported when :meth:`ExperimentOptions.check` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

EXPERIMENTS = ("table4", "table5", "table6", "fig6", "fig7", "fig8", "case", "generation")
#: fig8 default groups (paper: infants, pregnant women, patients with liver disease), as
#: disease-document token patterns that match the synthetic data and MIMIC-IV lab names.
DEFAULT_GROUPS = (
    "infant=age:infant",
    "pregnant=gender:f,lab:*hcg*:high|lab:*hcg*:abnormal|lab:*chorionic*:high|lab:*chorionic*:abnormal",
    "liver disease=lab:alt:high|lab:*(alt)*:high|lab:ast:high|lab:*(ast)*:high|lab:*bilirubin*:high",
)


@dataclass(frozen=True)
class ExperimentOptions:
    """What the experiments vary and analyse.

    Attributes:
        seeds: ``train.seed`` of every run (tables: mean and standard deviation over them).
        thresholds: Co-occurrence thresholds of ``fig6`` (at least the prepared data's
            ``build_threshold``).
        negatives: Negative samples per positive of ``fig7``.
        layers: GNN layers of ``table6``.
        tsne_patients: ``fig8``: at most this many test patients (a seeded sample).
        mask_model: ``fig8``: the model whose mask vectors are shown (``ag`` or ``wg``).
        groups: ``fig8``: patient groups (:func:`parse_group`).
        patient: ``case``: record id (default: the test record whose true package has
            the most labelled drug pairs).
        case_rows: ``case``: at most this many drug pairs per table.
        generation_model: ``generation``: the model that picks (paper: DPR-WG).
        mbr: With a temperature ``T``, the tables and ``generation`` also show every
            candidate-picking model's pick of highest expected F1 under
            ``softmax(scores / T)`` beside the paper's best-scoring pick
            (:mod:`dpr_dist.eval.mbr`; ``inf``: the candidate set's medoid).
        reuse_results: Earlier ``results.json`` files: a run with no model directory takes
            its row from them instead of training, where its data and configuration
            fingerprints match (:mod:`dpr_dist.eval.experiment_store`).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    thresholds: tuple[float, ...] = (0.01, 0.05, 0.1)
    negatives: tuple[int, ...] = (1, 5, 10, 20)
    layers: tuple[int, ...] = (1, 2)
    tsne_patients: int = 1000
    mask_model: str = "ag"
    groups: tuple[str, ...] = DEFAULT_GROUPS
    patient: str | None = None
    case_rows: int = 20
    generation_model: str = "wg"
    mbr: float | None = None
    reuse_results: tuple[str, ...] = ()

    def check(self, build_threshold: float) -> None:
        """Raises ``ValueError`` naming the first bad option."""
        from dpr_dist.eval.patient_groups import parse_group
        from dpr_dist.models.variants import VARIANTS

        checks = [
            ("seeds", len(self.seeds) > 0, "must name at least one seed"),
            ("thresholds", all(t >= build_threshold for t in self.thresholds),
             f"must be >= the prepared data's build_threshold {build_threshold}"),
            ("negatives", all(k >= 1 for k in self.negatives), "must be >= 1"),
            ("layers", all(k >= 1 for k in self.layers), "must be >= 1"),
            ("tsne_patients", self.tsne_patients >= 5, "must be >= 5"),
            ("mask_model", self.mask_model in VARIANTS and VARIANTS[self.mask_model].has_mask,
             "must be a DPR variant with a mask layer (ag, wg, ag_type, wg_type)"),
            ("generation_model", self.generation_model in (*VARIANTS, "package2vec", "lda", "br", "dam"),
             "must be a package model that scores packages"),
            ("case_rows", self.case_rows >= 1, "must be >= 1"),
            ("mbr", self.mbr is None or self.mbr > 0, "must be > 0 (a softmax temperature; inf for the medoid)"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ValueError(f"experiment option {name}={getattr(self, name)!r} {why}")
        for spec in self.groups:
            parse_group(spec)


def parse_list(text: str | Sequence, kind: Callable[[str], Any], allowed: Sequence | None = None) -> tuple:
    """``"a,b,c"`` (or a sequence) as a tuple of ``kind`` values, checked against ``allowed``."""
    items = [x.strip() for x in text.split(",")] if isinstance(text, str) else [str(x) for x in text]
    try:
        values = tuple(dict.fromkeys(kind(x) for x in items if x))
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a comma-separated list of {kind.__name__}") from None
    if allowed is not None and any(v not in allowed for v in values):
        raise ValueError(f"unknown value(s) {[v for v in values if v not in allowed]}; expected some of "
                         f"{list(allowed)}")
    if not values:
        raise ValueError("empty list")
    return values



def tag(value: Any) -> str:
    """A setting value as it appears in run names and labels (``0.05``, ``5``)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_arguments(p) -> None:
    """The options of ``dpr experiment`` and ``jobs/experiment.py`` on an ``argparse`` parser."""
    d = ExperimentOptions()

    def csv(values) -> str:
        return ",".join(tag(v) for v in values)

    p.add_argument("--out", required=True, help="output directory: runs/, report/ (and prepared/ with --emr)")
    p.add_argument("--which", default=",".join(EXPERIMENTS), help="comma-separated experiments to run (default: all of them, %(default)s)")
    p.add_argument("--seeds", default=csv(d.seeds), help=f"comma-separated train.seed values (default {csv(d.seeds)})")
    p.add_argument("--emr", help="EMR input, prepared into OUT/prepared (default: data.prepared of the config)")
    p.add_argument("--ddi", help="interaction input (with --emr)")
    p.add_argument("--thresholds", default=csv(d.thresholds), help="fig6: comma-separated co-occurrence thresholds, each at least the prepared "
                        "data's build_threshold (default %(default)s)")
    p.add_argument("--negatives", default=csv(d.negatives), help="fig7: comma-separated negative samples per positive (default %(default)s)")
    p.add_argument("--layers", default=csv(d.layers), help="table6: comma-separated numbers of GNN layers (default %(default)s)")
    p.add_argument("--group", dest="groups", action="append", metavar="NAME=PATTERNS",
                   help="fig8: a patient group from disease-document tokens, e.g. 'pregnant=gender:f,lab:*hcg*:high' "
                        "(',' = and, '|' = or, fnmatch patterns; repeatable; default: infant, pregnant, "
                        "liver disease)")
    p.add_argument("--tsne-patients", type=int, default=d.tsne_patients, help="fig8: at most this many test patients, a seeded sample "
                        "(default %(default)s)")
    p.add_argument("--mask-model", default=d.mask_model, help="fig8: the DPR variant whose mask vectors are shown, ag or wg (default %(default)s)")
    p.add_argument("--patient", help="case: record id (default: the test record with the most labelled pairs)")
    p.add_argument("--case-rows", type=int, default=d.case_rows, help="case: at most this many drug pairs per table (default %(default)s)")
    p.add_argument("--generation-model", default=d.generation_model, help="generation: the package model that picks from S1 and from S "
                        "(default %(default)s, DPR-WG as in the paper)")
    p.add_argument("--mbr", nargs="?", const=1.0, type=float, metavar="T",
                   help="tables and generation: also pick each patient's candidate of highest expected F1 under "
                        "softmax(scores / T), beside the paper's best-scoring pick (T defaults to 1; inf: the "
                        "candidate set's medoid; docs/training.md)")
    p.add_argument("--reuse-results", dest="reuse_results", action="append", metavar="FILE", default=[],
                   help="an earlier report's results.json (repeatable): a run with no model directory under OUT "
                        "takes its row from it instead of training, if it was measured on the same prepared data "
                        "with the same configuration (fingerprints in each row); tables only, since fig8, case and "
                        "generation need the models themselves")


def options_from_args(args) -> ExperimentOptions:
    """:class:`ExperimentOptions` from the parsed :func:`add_arguments` options."""
    return ExperimentOptions(
        seeds=parse_list(args.seeds, int), thresholds=parse_list(args.thresholds, float),
        negatives=parse_list(args.negatives, int), layers=parse_list(args.layers, int),
        tsne_patients=args.tsne_patients, mask_model=args.mask_model,
        groups=tuple(args.groups) if args.groups else DEFAULT_GROUPS, patient=args.patient,
        case_rows=args.case_rows, generation_model=args.generation_model, mbr=args.mbr,
        reuse_results=tuple(args.reuse_results))
