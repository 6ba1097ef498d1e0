"""The ``dpr`` command: each subcommand parses its options and calls one library function.

Run ``dpr --help`` for the list of subcommands and ``dpr SUBCOMMAND --help`` for each. This
module holds the handlers (``cmd_*``) and the entry point; the options and help texts are
in :mod:`dpr_dist.cli_parser`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

from dpr_dist.cli_parser import make_parser
from dpr_dist.config import Config, load_config


def _load(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    if getattr(args, "seed", None) is not None:
        overrides += [f"seed={args.seed}", f"train.seed={args.seed}"]
    if getattr(args, "parallel_runs", None) is not None:
        overrides.append(f"train.parallel_runs={args.parallel_runs}")
    return load_config(args.config, overrides)


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


# ----------------------------------------------------------------------------- commands
def cmd_synth(args: argparse.Namespace) -> int:
    from dpr_dist.data import synth

    cfg = _load(args)
    records = args.records if args.records is not None else cfg.synth.records
    drugs = args.drugs if args.drugs is not None else cfg.synth.drugs
    mean_package = args.mean_package if args.mean_package is not None else cfg.synth.mean_package
    emr, ddi = synth.generate(records, drugs, seed=cfg.seed, conditions=cfg.synth.conditions,
                              notes=cfg.synth.notes, mean_package=mean_package,
                              knobs=cfg.synth.knobs())
    _print(synth.write(emr, ddi, args.out))
    return 0


def cmd_import_mimic(args: argparse.Namespace) -> int:
    from dpr_dist.data.importers import mimic_iv

    _print(mimic_iv.import_mimic_iv(args.root, args.out))
    return 0


def cmd_import_drugbank(args: argparse.Namespace) -> int:
    from dpr_dist.data.importers import drugbank

    _print(drugbank.import_drugbank_ddi(args.pairs, args.types, args.vocab, args.out, adverse=args.adverse,
                                        templates=args.templates, rejects_out=args.rejects_out))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from dpr_dist.data.prepare import prepare

    cfg = _load(args)
    manifest = prepare(cfg, emr=args.emr, ddi=args.ddi, out=args.out)
    _print({k: manifest[k] for k in ("table1", "rows_read", "rejected_emr", "rejected_ddi", "reject_reasons", "splits",
                                    "seconds")})
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from dpr_dist.train.run import pretrain

    cfg = _with_data(_load(args), args)
    print(pretrain(cfg))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from dpr_dist.train.run import train

    cfg = _with_data(_load(args), args)
    print(train(cfg, args.model, pretrained=args.pretrained, out=args.out))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from dpr_dist.data import io
    from dpr_dist.eval.evaluate import evaluate_models, format_table
    from dpr_dist.eval.interaction_types import describe_type_head
    from dpr_dist.train.modeldir import load_model_dir
    from dpr_dist.train.prepared import read_records

    bundle = load_model_dir(args.model_dir)
    prepared = args.prepared or bundle.cfg.data.prepared
    records = read_records(prepared, args.split)
    models = args.models.split(",") if args.models else [bundle.model_name]
    if args.mbr is not None and bundle.model is None:
        raise SystemExit(f"dpr evaluate: --mbr needs a package model; {bundle.model_name} picks no package")
    metrics, predictions = evaluate_models(bundle, records, models, mbr_temperature=args.mbr)
    if args.generate:
        predictions = pa.concat_tables([predictions, *_generated_picks(bundle, records, metrics, args.mbr)])
    print(f"{args.split} metrics ({records.num_rows} records)\n{format_table(metrics)}")
    if "type_pairs" in metrics.get(bundle.model_name, {}):  # DPR-AG: what its edge attributes know of R
        print(f"{bundle.model_name} type head (eq. 21, model.type_targets: {bundle.cfg.model.type_targets}): "
              f"{describe_type_head(metrics[bundle.model_name])}")
    if args.generate:
        g = metrics[f"{bundle.model_name}+S"]
        print(f"{bundle.model_name}+S: picked from S = S1 ∪ S2 ∪ S3 (paper section 6): a generated package for "
              f"{100 * g['picked_generated']:.1f} % of the records; {g['mean_s1']:.1f} packages in S1 and "
              f"{g['mean_s']:.1f} in S on average")
    if args.out:
        io.write_json(metrics, io.join(args.out, "metrics.json"))
        io.write_table(predictions.select(["record_id", "model", "drugs"]), io.join(args.out, "predictions.parquet"))
    return 0


def _generated_picks(bundle, records, metrics: dict[str, dict], mbr: float | None) -> list:
    """``dpr evaluate --generate``: the model picking from the generated set ``S`` too, as
    the row ``<model>+S`` of ``metrics`` (its oracle ceiling is ``S``'s), and with ``--mbr``
    ``<model>+S+mbr``; returns their predictions."""
    import numpy as np

    from dpr_dist.eval.evaluate import predictions_table
    from dpr_dist.eval.generation_eval import generation_metrics

    if bundle.model is None:
        raise SystemExit(f"dpr evaluate: --generate needs a package model; {bundle.model_name} picks no package")
    g = generation_metrics(bundle, records, bundle.cfg.generation, with_picks=True, mbr_temperature=mbr)
    name = f"{bundle.model_name}+S"
    ids, names = records["record_id"].to_pylist(), np.asarray(bundle.drugs["name"].to_pylist(), dtype=object)
    metrics[name] = {"model": name, **g["s"], **{k: g[k] for k in ("picked_generated", "mean_s1", "mean_s")}}
    tables = [predictions_table(ids, name, g["picks"], names)]
    if mbr is not None:
        metrics[f"{name}+mbr"] = {"model": f"{name}+mbr", **g["s_mbr"], "mbr_temperature": mbr}
        tables.append(predictions_table(ids, f"{name}+mbr", g["picks_mbr"], names))
    return tables


def cmd_tune(args: argparse.Namespace) -> int:
    from dpr_dist.tune import run_sweep

    _print(run_sweep(_with_data(_load(args), args), model=args.model, pretrained=args.pretrained))
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from dpr_dist.eval.pipeline import pipeline

    result = pipeline(_load(args), args.emr, args.ddi, args.out, args.models, mbr_temperature=args.mbr)
    print(f"metrics -> {result['metrics_path']}\npredictions -> {result['predictions_path']}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from dpr_dist.eval.experiment_options import options_from_args
    from dpr_dist.eval.experiments import run_experiments

    result = run_experiments(_load(args), args.out, args.which, options_from_args(args), emr=args.emr, ddi=args.ddi)
    print(result["report"])
    return 0


def cmd_planted(args: argparse.Namespace) -> int:
    from dpr_dist.data import io
    from dpr_dist.eval.planted import audit_predictions, audit_table, regenerate_truth

    cfg = _load(args)
    truth = regenerate_truth(args.emr, args.drugs if args.drugs is not None else cfg.synth.drugs, cfg.seed,
                             cfg.synth.conditions,
                             args.mean_package if args.mean_package is not None else cfg.synth.mean_package,
                             notes=cfg.synth.notes, knobs=cfg.synth.knobs())
    rows = {f: audit_predictions(truth, io.read_table(f)) for f in args.predictions}
    print(audit_table(rows))
    if args.out:
        io.write_json(rows, args.out)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from dpr_dist.data import io
    from dpr_dist.eval.compare import compare_files, compare_table

    if len(args.a) != len(args.b):
        raise ValueError(f"dpr compare: --a is given {len(args.a)} times and --b {len(args.b)} times; "
                         "pass them in pairs")
    rows = compare_files(args.prepared, args.split, list(zip(args.a, args.b)), args.metric, args.boot, args.seed,
                         pool=args.pool)
    print(compare_table(rows))
    if args.out:
        io.write_json(rows, args.out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from dpr_dist.serve.deploy import reload_model, run_service

    cfg = _load(args)
    if args.reload:
        reload_model(cfg, args.reload, num_cpus=args.num_cpus, device=args.device)
        print(f"reloaded {args.reload}")
        return 0
    run_service(cfg, model_dir=args.model_dir, num_cpus=args.num_cpus, device=args.device, blocking=True)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from dpr_dist.score.batch import score_backlog

    _print(score_backlog(args.model_dir, args.input, args.out, num_actors=args.num_actors,
                         rows_per_shard=args.rows_per_shard, batch_size=args.batch_size, num_gpus=args.num_gpus,
                         rank_by=args.rank_by, temperature=args.temperature))
    return 0


def _with_data(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply --prepared / --storage-path shortcuts as overrides."""
    extra = []
    if getattr(args, "prepared", None):
        extra.append(f"data.prepared={args.prepared}")
    if getattr(args, "storage_path", None):
        extra.append(f"train.storage_path={args.storage_path}")
    return cfg.with_overrides(extra)


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``dpr`` parser (see :mod:`dpr_dist.cli_parser`), each subcommand wired to its ``cmd_*`` above."""
    return make_parser({
        "synth": cmd_synth, "import mimic-iv": cmd_import_mimic, "import drugbank-ddi": cmd_import_drugbank,
        "prepare": cmd_prepare, "pretrain": cmd_pretrain, "train": cmd_train, "tune": cmd_tune,
        "evaluate": cmd_evaluate, "pipeline": cmd_pipeline, "serve": cmd_serve, "score": cmd_score,
        "experiment": cmd_experiment, "planted": cmd_planted, "compare": cmd_compare,
    })


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.fn(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"dpr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
