"""``dpr serve`` and ``dpr score`` from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dpr_dist.cli import build_parser, main

sys.path.insert(0, str(Path(__file__).resolve().parent / "serve"))
from modeldirs import build_model_dir  # noqa: E402


def test_serve_and_score_are_subcommands_with_their_options():
    parser = build_parser()
    args = parser.parse_args(["serve", "--model-dir", "s3://b/m", "--num-cpus", "0.5", "--set", "serve.port=9000"])
    assert (args.model_dir, args.num_cpus, args.reload, args.overrides) == ("s3://b/m", 0.5, None, ["serve.port=9000"])
    args = parser.parse_args(["score", "--model-dir", "m", "--input", "b", "--out", "o", "--num-actors", "2"])
    assert (args.model_dir, args.input, args.out, args.num_actors, args.rows_per_shard, args.num_gpus) == \
        ("m", "b", "o", 2, 4096, None)
    assert (args.rank_by, args.temperature) == ("score", 1.0)
    args = parser.parse_args(["score", "--model-dir", "m", "--input", "b", "--out", "o", "--rank-by", "expected_f1",
                              "--temperature", "0.5"])
    assert (args.rank_by, args.temperature) == ("expected_f1", 0.5)
    with pytest.raises(SystemExit):
        parser.parse_args(["score", "--model-dir", "m", "--input", "b", "--out", "o", "--rank-by", "best"])
    with pytest.raises(SystemExit):
        parser.parse_args(["score", "--model-dir", "m"])  # --input and --out are required


@pytest.mark.parametrize("command,words", [("serve", ["/v1/recommend", "/v1/score", "/v1/generate", "--reload"]),
                                           ("score", ["results/", "rejects/", "resumes", "--num-actors", "--rank-by"])])
def test_help_says_what_it_does(command, words, dpr_stdout):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = dpr_stdout()
    assert out.startswith(f"usage: dpr {command}") and all(w in out for w in words)


@pytest.mark.slow
def test_score_a_backlog_from_the_command_line(ray_session, tiny_data, tiny_prepared, tmp_path, dpr_stdout):
    model_dir = build_model_dir(str(tiny_prepared["dir"]), str(tmp_path / "model"), "ag", seed=5)
    backlog = str(tmp_path / "backlog.parquet")  # the EMR contract without drugs, 4 row groups
    pq.write_table(tiny_data["emr_table"].drop_columns(["drugs"]), backlog, row_group_size=100)
    rows = tiny_data["emr_table"].num_rows
    out = str(tmp_path / "scored")
    argv = ["score", "--model-dir", model_dir, "--input", backlog, "--out", out, "--rows-per-shard", "128",
            "--batch-size", "64"]
    assert main(argv) == 0
    summary = json.loads(dpr_stdout())
    assert summary["read"] == rows == summary["scored"] + summary["rejected"] and summary["scored"] > 0
    assert summary["shards_skipped"] == 0 and summary["shards"] == summary["shards_scored"] >= 2
    results = pq.read_table(Path(out) / "results")
    assert results.num_rows == summary["scored"] == len(set(results["record_id"].to_pylist()))
    assert main(argv) == 0  # a re-run finds every shard done
    again = json.loads(dpr_stdout())
    assert again["shards_scored"] == 0 and again["read"] == rows


def test_score_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["score", "--model-dir", str(tmp_path / "m"), "--input", str(tmp_path / "nothing"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "dpr score: error:" in capsys.readouterr().err
