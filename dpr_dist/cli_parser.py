"""The ``dpr`` command's argparse definitions: every subcommand's options, help and description.

:func:`make_parser` builds the whole parser; the handlers (``cmd_*`` in :mod:`dpr_dist.cli`)
come in as a mapping, so this module holds only the command line's text and shape.
"""

from __future__ import annotations

import argparse
from typing import Callable, Mapping

EPILOG = """\
typical session (synthetic data, local Ray):
  dpr synth --records 3000 --drugs 120 --out data/demo
  dpr prepare --emr data/demo/emr --ddi data/demo/ddi.parquet --out runs/demo/prepared

real data:
  dpr import mimic-iv --root ../shared/data/mimic-iv-demo-2.2 --out data/mimic/emr.parquet
  dpr import drugbank-ddi --pairs ../shared/data/ddi/drugbank_ddi_86types.tsv \\
      --types ../shared/data/ddi/interaction_types_86.csv \\
      --vocab ../shared/data/vocab/drugbank_vocabulary.csv --out data/mimic/ddi.parquet

Paths may be local or s3:// URIs (endpoint and credentials from the usual AWS_* variables).
Every subcommand takes --config FILE (YAML, see configs/) and --set section.key=value overrides.
Set RAY_ADDRESS to run on a cluster; otherwise a local Ray starts on demand.
"""


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config (default: built-in defaults)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--seed", type=int, help="seed of everything random (overrides seed and train.seed)")


def _run_args(p: argparse.ArgumentParser) -> None:
    """``--prepared`` and ``--storage-path``, the shortcuts :func:`dpr_dist.cli._with_data` applies."""
    p.add_argument("--prepared", help="prepared data directory (default: data.prepared)")
    p.add_argument("--storage-path", help="checkpoints and run state, local or s3:// (default: train.storage_path)")


def parallel_runs_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--parallel-runs", type=int, metavar="P",
                   help="train up to P of the runs at once, each its own Ray Train run (sets train.parallel_runs; "
                        "default 1: one after another). Worth it when the cluster holds P worker groups; runs "
                        "beyond that wait for resources")


def _pretrained_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pretrained", metavar="DIR",
                   help="start from this NCF pre-training instead of running one: a pre-training run directory "
                        "(with pretrained.json, e.g. runs/bench/runs/bench-ncf) or a checkpoint directory "
                        "(with model.pt); it must be pre-trained on the same prepared data")


def rank_by_args(p: argparse.ArgumentParser) -> None:
    """``--rank-by`` and ``--temperature`` of batch scoring (``dpr score``, ``jobs/batch_score.py``)."""
    p.add_argument("--rank-by", choices=("score", "expected_f1"), default="score",
                   help="which candidate is recommended: the best-scoring one (the paper, default) or the one of "
                        "highest expected F1 under softmax(scores / T) (serve.rank_by; docs/serving.md)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T",
                   help="T of --rank-by expected_f1, finite and > 0 (default 1)")


def make_parser(handlers: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The ``dpr`` parser; each subcommand's ``fn`` default is ``handlers[subcommand]``.

    Args:
        handlers: Subcommand name (``import mimic-iv`` and ``import drugbank-ddi`` for the
            import sources) -> the function that runs it on the parsed arguments.
    """
    parser = argparse.ArgumentParser(
        prog="dpr",
        description="Drug package recommendation (DPR-WG, DPR-AG) at hospital scale on Ray.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable, help_: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(fn=fn)
        return p

    p = add("synth", handlers["synth"], "write synthetic EMR records and interactions",
            "Generate synthetic EMR records and drug interactions in the data contract, with the\n"
            "structure the paper's models exist to find (see docs/synthetic-data.md).\n"
            "Writes OUT/emr/part-*.parquet and OUT/ddi.parquet.")
    p.add_argument("--records", type=int, help="number of hospital stays (default: synth.records)")
    p.add_argument("--drugs", type=int, help="number of distinct drugs (default: synth.drugs)")
    p.add_argument("--mean-package", type=float, help="average package size (default 18, the paper's)")
    p.add_argument("--out", required=True, help="output directory (local or s3://)")
    _config_args(p)

    p = add("import", lambda a: a.import_fn(a), "convert real data into the contract",
            "Convert real EMR or interaction data into the data contract (docs/data-contract.md).")
    isub = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    q = isub.add_parser("mimic-iv", help="MIMIC-IV hosp tables -> EMR records",
                        description="One record per admission (hadm_id): demographics, insurance, surgery,\n"
                                    "labs with reference ranges and flags, prescribed drugs. No notes.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--root", required=True, help="MIMIC-IV root holding hosp/ (demo or full)")
    q.add_argument("--out", required=True, help="output Parquet file or directory (local or s3://)")
    q.set_defaults(import_fn=handlers["import mimic-iv"])
    q = isub.add_parser("drugbank-ddi", help="DrugBank pairs + 86 templates -> interactions",
                        description="Label DrugBank interaction pairs as none / synergism / antagonism with the\n"
                                    "reviewed template table (dpr_dist/data/resources/ddi_templates.csv).")
    q.add_argument("--pairs", required=True, help="pairs file (drug1, drug2, type), tab-separated")
    q.add_argument("--types", required=True, help="the 86 interaction templates (CSV)")
    q.add_argument("--vocab", required=True, help="DrugBank vocabulary CSV (id -> common name, synonyms)")
    q.add_argument("--out", required=True, help="output Parquet file (local or s3://)")
    q.add_argument("--adverse", default=None, choices=["antagonism", "synergism", "none", "unlabeled"],
                   help="label of the adverse-effect templates ('risk or severity ... can be increased'); "
                        "default: the table's own choice, unlabeled (left out and counted), see "
                        "docs/data-contract.md")
    q.add_argument("--templates", help="an alternative reviewed template table (CSV) instead of the packaged one")
    q.add_argument("--rejects-out", help="where to write the pairs that could not be imported (Parquet)")
    q.set_defaults(import_fn=handlers["import drugbank-ddi"])

    p = add("prepare", handlers["prepare"], "validate records and build package graphs on Ray Data",
            "Validate and normalize EMR records, build vocabularies, the relation matrix R and\n"
            "co-occurrence proportions (training split), split by patient 80/10/10, and build each\n"
            "record's package graph in parallel. Bad rows go to OUT/rejects.parquet with a reason.\n"
            "Writes OUT/records/split=*/, OUT/vocab/, OUT/manifest.json (paper Table 1 statistics).")
    p.add_argument("--emr", help="EMR records: Parquet/CSV/JSONL file or directory (default: data.emr)")
    p.add_argument("--ddi", help="interactions file (default: data.ddi)")
    p.add_argument("--out", help="output directory (default: data.prepared)")
    _config_args(p)

    p = add("pretrain", handlers["pretrain"], "NCF pre-training on Ray Train (eqs. 4-5)",
            "Pre-train the patient encoder and drug embeddings with NCF and BPR on Ray Train\n"
            "(train.num_workers DDP workers). Re-running with the same train.name resumes.\n"
            "Prints the URI of the best checkpoint (by validation F1 of NCF's top-K drugs).")
    _run_args(p)
    _config_args(p)

    p = add("train", handlers["train"], "train one package model on Ray Train",
            "Train one model (pre-training NCF first unless a finished run of the same name exists)\n"
            "with DDP and distributed negative sampling, keep the best epoch by validation F1 and\n"
            "write a self-contained model directory (weights, config, vocabularies, candidate index).\n"
            "Re-running with the same train.name resumes from the last checkpoint.")
    p.add_argument("--model", default=None,
                   help="ag, wg, gnn, wg_context, wg_type, ag_mask, ag_type, ncf, nn, package2vec, lda, br, dam "
                        "(default: model.name)")
    _run_args(p)
    _pretrained_arg(p)
    p.add_argument("--out", help="model directory (default: {storage_path}/{name}-{model}/model)")
    _config_args(p)

    p = add("tune", handlers["tune"], "hyperparameter sweep: Ray Tune + Optuna, every trial a Ray Train run",
            "Search co-occurrence threshold, negative ratio, GNN layers, edge dimension, learning\n"
            "rate and L2 (ranges in the tune section; tune.rank_weight adds the ranking term's\n"
            "weight) with Optuna's TPE and ASHA early stopping on validation F1. All trials share\n"
            "one NCF pre-training (the sweep's own, or --pretrained). Writes a results table\n"
            "(Parquet, Markdown), optimization-history and parameter-importance plots, and the\n"
            "best model directory (best/) with test metrics.\n"
            "Re-running with the same tune.name resumes the sweep. See docs/tuning.md.")
    p.add_argument("--model", help="DPR variant to tune (default: model.name)")
    _run_args(p)
    _pretrained_arg(p)
    _config_args(p)

    p = add("evaluate", handlers["evaluate"], "metrics of a model directory on a split",
            "Recommend a package for every record of a split the way the paper does (candidates\n"
            "from the 10 most similar training patients, best-scoring candidate; NCF: top-K drugs)\n"
            "and print precision, recall, F1, Jaccard, antagonism rates and the oracle ceiling.")
    p.add_argument("--model-dir", required=True, help="a model directory written by dpr train (local or s3://)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--prepared", help="prepared data (default: the one the model was trained on)")
    p.add_argument("--models", help="comma-separated: the directory's model and/or baselines (ncf, popularity, nn)")
    p.add_argument("--out", help="directory for metrics.json and predictions.parquet")
    p.add_argument("--generate", action="store_true",
                   help="also let the package model pick from S = S1 ∪ S2 ∪ S3, the candidates extended by the "
                        "package-generation heuristic of paper section 6 (row <model>+S; its ceiling is S's)")
    p.add_argument("--mbr", nargs="?", const=1.0, type=float, metavar="T",
                   help="also pick the candidate of highest expected F1 under softmax(score / T) instead of the "
                        "best-scoring one (minimum Bayes risk; T defaults to 1; row <model>+mbr, and "
                        "<model>+S+mbr with --generate; docs/training.md)")

    p = add("planted", handlers["planted"], "check picks against the synthetic data's planted rules",
            "For predictions on data written by dpr synth: how often the picks break a rule (a pair\n"
            "avoided for patients with a condition) or hold a drug contraindicated for the patient,\n"
            "next to the true packages, and the most that knowing these patient-specific rules could\n"
            "add to F1 (remove every avoided drug from the picks). The generator is re-run from the\n"
            "config to recover what it planted; the EMR must be its output (docs/synthetic-data.md).")
    p.add_argument("--emr", required=True, help="the synthetic EMR the predictions are of (dpr synth's OUT/emr)")
    p.add_argument("--predictions", required=True, action="append", metavar="FILE",
                   help="a predictions.parquet of dpr evaluate or dpr pipeline (repeatable)")
    p.add_argument("--drugs", type=int, help="number of drugs it was generated with (default: synth.drugs)")
    p.add_argument("--mean-package", type=float, help="mean package size it was generated with "
                                                       "(default: synth.mean_package)")
    p.add_argument("--out", help="also write the results as JSON to this file")
    _config_args(p)

    p = add("compare", handlers["compare"], "is model A's F1 really higher than B's? (paired, by patient)",
            "Compare two models' picks on the same records: per-record F1 (or --metric) against the\n"
            "true packages of the prepared split, the mean difference A - B with a 95% interval from a\n"
            "bootstrap over patients (a patient's records are resampled together), a two-sided p-value\n"
            "and the share of records where A is better, worse or level. --a and --b are repeatable\n"
            "(one comparison per pair, e.g. one per seed); each is a predictions.parquet of dpr evaluate\n"
            "or dpr pipeline, FILE:MODEL when the file holds several models.")
    p.add_argument("--prepared", required=True, help="the prepared data the predictions are of (dpr prepare's OUT)")
    p.add_argument("--split", default="test", choices=("val", "test"), help="the split evaluated (default test)")
    p.add_argument("--a", required=True, action="append", metavar="FILE[:MODEL]", help="model A's picks")
    p.add_argument("--b", required=True, action="append", metavar="FILE[:MODEL]", help="model B's picks")
    p.add_argument("--metric", default="f1", choices=("f1", "precision", "recall", "jaccard"))
    p.add_argument("--pool", action="store_true",
                   help="one more row: each record's metric averaged over the pairs' A and B sides (e.g. three "
                        "seeds of each model), bootstrapped over patients the same way")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap samples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--out", help="also write the results as JSON to this file")

    p = add("pipeline", handlers["pipeline"], "data to results in one command: prepare, train, evaluate",
            "Prepare the EMR and interaction inputs, pre-train NCF, train every listed model with the\n"
            "same trainer and patient encoder, evaluate each on the test split the way the paper does\n"
            "(candidates from the most similar training patients; NCF: top-K drugs) and write, under\n"
            "OUT:\n"
            "  metrics.json         one entry per model: precision, recall, F1, Jaccard, antagonism\n"
            "                       rate of the recommendations and of the true packages, the oracle\n"
            "                       ceiling of the candidate sets and F1 as a fraction of it\n"
            "  metrics.md           the same as a Markdown table\n"
            "  predictions.parquet  record_id, model, drugs (recommended package, input drug names)\n"
            "  prepared/, runs/     the prepared data, Ray Train runs and model directories\n"
            "Re-running with the same OUT reuses the prepared data and finished runs. NCF is\n"
            "pre-trained first; the other models then train --parallel-runs at a time.\n\n"
            "example:\n"
            "  dpr pipeline --emr data/demo/emr --ddi data/demo/ddi.parquet --out runs/demo-pipeline \\\n"
            "      --models ncf,nn,package2vec,lda,br,dam,gnn,wg,ag --config configs/bench.yaml --seed 0")
    p.add_argument("--emr", required=True, help="EMR records in the data contract: file, directory or s3://")
    p.add_argument("--ddi", required=True, help="drug interactions in the data contract (file or s3://)")
    p.add_argument("--out", required=True, help="output directory (local or s3://)")
    p.add_argument("--models", default="ncf,nn,package2vec,lda,br,dam,gnn,wg,ag",
                   help="comma-separated models to train and evaluate: ncf, nn, package2vec, lda, br, dam, gnn, "
                        "wg, ag, the ablations wg_context, wg_type, ag_mask, ag_type, and popularity "
                        "(default: the paper's Table 4, ncf,nn,package2vec,lda,br,dam,gnn,wg,ag)")
    p.add_argument("--mbr", nargs="?", const=1.0, type=float, metavar="T",
                   help="also give each candidate-picking model the entry <model>+mbr: its pick of highest "
                        "expected F1 under softmax(score / T), from the same scores (T defaults to 1; "
                        "docs/training.md)")
    parallel_runs_arg(p)
    _config_args(p)

    p = add("serve", handlers["serve"], "serve a model directory over HTTP with Ray Serve",
            "Deploy the recommendation service (Ray Serve, FastAPI ingress) on serve.host:serve.port\n"
            "and serve until interrupted (Ctrl-C shuts Serve down). Routes:\n"
            "  POST /v1/recommend  top-k packages of the patient's candidate set, the first explained\n"
            "  POST /v1/score      a proposed package's score, rank and explanation\n"
            "  POST /v1/generate   packages from the generation heuristic, scored and explained\n"
            "  GET  /v1/health, /v1/model; the OpenAPI document at /docs and /openapi.json\n"
            "Requests are batched inside replicas (serve.max_batch_size, serve.batch_wait_timeout_s);\n"
            "bodies above serve.max_request_bytes get 413. Packages are ranked by the model's score\n"
            "(the paper), or with --set serve.rank_by=expected_f1 by expected F1 (serve.temperature).\n"
            "--reload points a running service at\n"
            "another model directory in place (user_config), without a restart. See docs/serving.md.\n\n"
            "example:\n"
            "  dpr serve --model-dir runs/demo/ray/demo-ag/model --set serve.port=8000\n"
            "  dpr serve --reload s3://models/dpr-ag-v2")
    p.add_argument("--model-dir", help="model directory written by dpr train, local or s3:// "
                                       "(default: serve.model_dir)")
    p.add_argument("--reload", metavar="DIR",
                   help="point the running service (deployed with the same config) at another model directory "
                        "and exit")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs reserved per replica (default 1)")
    p.add_argument("--device", help="cuda to run the models on a GPU, one per replica (default: CPU)")
    _config_args(p)

    p = add("score", handlers["score"], "recommend a package for every patient of a backlog on Ray Data",
            "Batch scoring: read a backlog of patients (Parquet in the EMR contract, drugs not needed;\n"
            "file, directory or s3:// prefix), recommend one package per patient with an actor pool\n"
            "holding the model (GPU actors when the cluster has GPUs) and write, under OUT:\n"
            "  results/shard-*.parquet  record_id, patient_id, package, drug_ids, score, warnings\n"
            "                           (antagonistic pairs), model, model_version\n"
            "  rejects/shard-*.parquet  bad rows: source, row, record_id, field, reason\n"
            "  summary.json             read, scored, rejected (read = scored + rejected), timings\n"
            "A re-run with the same OUT resumes: finished shards are skipped, the others redone.\n"
            "Prints the summary as JSON.\n\n"
            "example:\n"
            "  dpr score --model-dir runs/demo/ray/demo-ag/model --input data/backlog --out runs/scored")
    p.add_argument("--model-dir", required=True, help="model directory written by dpr train (local or s3://)")
    p.add_argument("--input", required=True, help="backlog: Parquet file or directory (local or s3://)")
    p.add_argument("--out", required=True, help="output directory (local or s3://); re-run to resume")
    p.add_argument("--num-actors", type=int, default=1, help="scoring actors, each holding the model (default 1)")
    p.add_argument("--rows-per-shard", type=int, default=4096,
                   help="shard size of a new run (a resumed run keeps its plan; default 4096)")
    p.add_argument("--batch-size", type=int, default=512, help="patients per model call (default 512)")
    p.add_argument("--num-gpus", type=float, help="GPUs per actor (default: 1 if the cluster has GPUs, else 0)")
    rank_by_args(p)

    p = add("experiment", handlers["experiment"], "the paper's experiments: Tables 4-8, Figures 6-8, generation",
            "Run the experiments of paper sections 5 and 6 over several seeds and write a report:\n"
            "Markdown tables (mean and standard deviation over the seeds) and PNG plots in\n"
            "OUT/report/ (report.md joins them; results.json holds every run's test metrics).\n"
            "  table4      all models          table5  ablations      table6  1 vs 2 GNN layers\n"
            "  fig6        thresholds          fig7    negative samples\n"
            "  fig8        t-SNE of DPR mask vectors of test patients by patient group\n"
            "  case        Tables 7 and 8 for one patient (impact factors, type probabilities)\n"
            "  generation  package generation (section 6): picking from S1 vs S1 u S2 u S3\n"
            "Every run is a Ray Train run under OUT/runs; finished runs are reused, so a re-run (or\n"
            "a run in the output directory of dpr pipeline) trains only what is missing. The runs\n"
            "the chosen experiments need train first, --parallel-runs at a time (each seed's\n"
            "pre-training before its other runs), then the report is written.\n\n"
            "example:\n"
            "  dpr experiment --config configs/bench.yaml --out runs/bench-exp --which table4,table5 \\\n"
            "      --seeds 0,1,2")
    from dpr_dist.eval.experiment_options import add_arguments as _experiment_arguments

    _experiment_arguments(p)
    parallel_runs_arg(p)
    p.add_argument("--config", metavar="FILE", help="YAML config (default: built-in defaults)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    return parser
