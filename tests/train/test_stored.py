"""Reading a stored Ray Train run back (the finished runs themselves are read in
tests/train/test_run.py and tests/tune/test_sweep.py)."""

from __future__ import annotations

from dpr_dist.train.stored import checkpoint_state, stored_run


class _Checkpoint:
    def __init__(self, path: str) -> None:
        self.path = path


def test_a_directory_without_a_run_snapshot_is_no_run(tmp_path):
    assert stored_run(str(tmp_path / "none")) is None
    (tmp_path / "empty").mkdir()
    assert stored_run(str(tmp_path / "empty")) is None


def test_checkpoint_state_reads_state_json(tmp_path):
    (tmp_path / "run" / "epoch_0001").mkdir(parents=True)
    (tmp_path / "run" / "epoch_0001" / "state.json").write_text('{"next_epoch": 2, "best_epoch": 1}')
    state = checkpoint_state(str(tmp_path / "run"), _Checkpoint(str(tmp_path / "run" / "epoch_0001")))
    assert state == {"next_epoch": 2, "best_epoch": 1}
