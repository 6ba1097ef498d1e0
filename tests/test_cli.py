import json

import pytest

from dpr_dist.cli import build_parser, main


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return list(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command, dpr_stdout):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = dpr_stdout()
    assert out.startswith("usage: dpr " + command)
    assert len(out.splitlines()) > 5


def test_synth_then_prepare_from_the_command_line(tmp_path, ray_session, dpr_stdout):
    assert main(["synth", "--records", "150", "--drugs", "30", "--mean-package", "6", "--out",
                 str(tmp_path / "d")]) == 0
    dpr_stdout()
    assert main(["prepare", "--emr", str(tmp_path / "d" / "emr"), "--ddi", str(tmp_path / "d" / "ddi.parquet"),
                 "--out", str(tmp_path / "p"), "--set", "data.rows_per_block=64"]) == 0
    summary = json.loads(dpr_stdout())
    assert summary["table1"]["records"] + summary["rejected_emr"] == summary["rows_read"] == 150
    assert (tmp_path / "p" / "manifest.json").exists()


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["prepare", "--emr", str(tmp_path / "missing"), "--ddi", str(tmp_path / "x.parquet"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["prepare", "--emr", "x", "--set", "train.epoch=3"]) == 2
    assert "train.epoch" in capsys.readouterr().err


def test_synth_takes_the_mean_package_from_the_config(tmp_path, dpr_stdout):
    sizes = {}
    for mean in (4, 12):
        assert main(["synth", "--records", "300", "--drugs", "60", "--out", str(tmp_path / str(mean)),
                     "--set", f"synth.mean_package={mean}"]) == 0
        sizes[mean] = json.loads(dpr_stdout())["mean_package"]
    assert sizes[4] < 7 < sizes[12]


def test_ray_driver_lines_are_not_read_as_dpr_output(dpr_stdout):
    """Serve's shutdown makes Ray print a raylet line into the driver's stdout seconds later, in
    whichever test runs then; what ``dpr`` printed must still parse."""
    print("\x1b[33m(raylet)\x1b[0m Task ServeController.graceful_shutdown failed. There are infinite retries "
          "remaining, so the task will be retried. Error: The actor is dead because it was killed by `ray.kill`.")
    print('{\n  "records": 3\n}')
    print("(ScoreActor pid=123) a worker's log line")
    assert json.loads(dpr_stdout()) == {"records": 3}
