from pathlib import Path

import pytest

from sm_train.checkpoint import latest_complete, resolve_resume
from sm_train.errors import ConfigError


def checkpoint(root: Path, step: int, complete: bool = True) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text("{}")
    return path


def test_newest_complete_checkpoint_wins(tmp_path: Path) -> None:
    checkpoint(tmp_path, 5)
    best = checkpoint(tmp_path, 10)
    checkpoint(tmp_path, 15, complete=False)  # killed while saving
    (tmp_path / "checkpoint-x").mkdir()
    assert latest_complete(tmp_path) == best
    assert resolve_resume("auto", tmp_path) == str(best)


def test_nothing_to_resume_starts_fresh(tmp_path: Path) -> None:
    assert resolve_resume("auto", tmp_path / "missing") is None
    checkpoint(tmp_path, 5)
    assert resolve_resume("never", tmp_path) is None


def test_an_explicit_path_must_be_a_checkpoint(tmp_path: Path) -> None:
    path = checkpoint(tmp_path, 3)
    assert resolve_resume(str(path), tmp_path) == str(path)
    with pytest.raises(ConfigError, match="is not a checkpoint"):
        resolve_resume(str(tmp_path / "nope"), tmp_path)
