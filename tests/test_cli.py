import json

import pytest

from dpr_dist.cli import build_parser, main


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return list(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dpr " + command)
    assert len(out.splitlines()) > 5


def test_synth_then_prepare_from_the_command_line(tmp_path, ray_session, capsys):
    assert main(["synth", "--records", "150", "--drugs", "30", "--mean-package", "6", "--out",
                 str(tmp_path / "d")]) == 0
    capsys.readouterr()
    assert main(["prepare", "--emr", str(tmp_path / "d" / "emr"), "--ddi", str(tmp_path / "d" / "ddi.parquet"),
                 "--out", str(tmp_path / "p"), "--set", "data.rows_per_block=64"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["table1"]["records"] + summary["rejected_emr"] == summary["rows_read"] == 150
    assert (tmp_path / "p" / "manifest.json").exists()


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["prepare", "--emr", str(tmp_path / "missing"), "--ddi", str(tmp_path / "x.parquet"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["prepare", "--emr", "x", "--set", "train.epoch=3"]) == 2
    assert "train.epoch" in capsys.readouterr().err


def test_synth_takes_the_mean_package_from_the_config(tmp_path, capsys):
    sizes = {}
    for mean in (4, 12):
        assert main(["synth", "--records", "300", "--drugs", "60", "--out", str(tmp_path / str(mean)),
                     "--set", f"synth.mean_package={mean}"]) == 0
        sizes[mean] = json.loads(capsys.readouterr().out)["mean_package"]
    assert sizes[4] < 7 < sizes[12]
