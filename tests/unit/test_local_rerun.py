"""local_rerun.py: a run in a local tree replaces the earlier model and outputs only when it writes a model."""

from __future__ import annotations

from pathlib import Path

from sm_train import local_tree
from sm_train.local_rerun import PREVIOUS, set_aside, settle, wrote_model
from tests.unit.test_local import snapshot


def tree(tmp_path: Path) -> Path:
    """A marked tree after a finished run."""
    root = tmp_path / "tree"
    for name in ("model/model.safetensors", "model/all_results.json", "output/data/all_results.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"{name} of the earlier run")
    (root / local_tree.MARKER).write_text(local_tree.MARKER_TEXT)
    return root


def test_a_run_starts_empty_and_a_finished_one_replaces_the_earlier_outputs(tmp_path) -> None:
    root = tree(tmp_path)
    set_aside(root)
    assert snapshot(root / "model") == {} and sorted(snapshot(root / "output")) == ["data"]
    assert (root / PREVIOUS / "model" / "model.safetensors").is_file()
    (root / "model" / "all_results.json").write_text("new")
    assert wrote_model(root) and settle(root, keep_new=True) is False
    assert not (root / PREVIOUS).exists() and snapshot(root / "model") == {"all_results.json": b"new"}


def test_a_failed_run_puts_the_earlier_outputs_back_with_its_failure_file(tmp_path) -> None:
    root = tree(tmp_path)
    (root / "output" / "failure").write_text("an older run's failure")
    before = snapshot(root / "model"), snapshot(root / "output" / "data")
    set_aside(root)
    (root / "output" / "failure").write_text("this run's failure")
    (root / "model" / "partial.bin").write_text("cut off")  # a job killed while saving
    assert not wrote_model(root) and settle(root, keep_new=False) is True
    assert (snapshot(root / "model"), snapshot(root / "output" / "data")) == before
    assert (root / "output" / "failure").read_text() == "this run's failure" and not (root / PREVIOUS).exists()


def test_a_run_whose_local_was_killed_is_settled_at_the_next_start(tmp_path) -> None:
    root = tree(tmp_path)
    before = snapshot(root / "model")
    set_aside(root)  # ... and `local` was killed before it settled: the run wrote no model
    set_aside(root)
    assert snapshot(root / PREVIOUS / "model") == before and snapshot(root / "model") == {}
    assert settle(root, keep_new=False) and snapshot(root / "model") == before
    assert settle(root, keep_new=False) is False  # nothing set aside: nothing to do
