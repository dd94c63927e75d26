"""checkpoint.py: complete-or-absent checkpoints, setting incomplete ones aside, the resume choice and rotation."""

import json
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sm_train import checkpoint
from sm_train.checkpoint import INCOMPLETE_DIR, problem, resolve_resume, rotate, write_manifest
from sm_train.errors import ConfigError
from tests.unit.test_trajectory import RUN


def make(root: Path, step: int, manifest: bool = True) -> Path:
    """A checkpoint-N folder with the files Trainer writes, small."""
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"w": torch.arange(64, dtype=torch.float32)}, str(path / "model.safetensors"))
    torch.save({"state": {}, "param_groups": []}, path / "optimizer.pt")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    torch.save({"cpu": torch.random.get_rng_state()}, path / "rng_state.pth")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": [{"loss": 0.5}] * 5}))
    if manifest:
        write_manifest(path)
    return path


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_complete_with_and_without_manifest(tmp_path: Path) -> None:
    assert problem(make(tmp_path, 1)) is None
    assert problem(make(tmp_path, 2, manifest=False)) is None  # e.g. written by plain Trainer


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: (p / "trainer_state.json").unlink(), "trainer_state.json is missing"),
        (lambda p: truncate(p / "trainer_state.json", 5), "trainer_state.json is missing or has the wrong size"),
        (lambda p: truncate(p / "model.safetensors", 100), "model.safetensors is missing or has the wrong size"),
        (lambda p: truncate(p / "optimizer.pt", 30), "optimizer.pt is missing or has the wrong size"),
        (lambda p: (p / "scheduler.pt").unlink(), "scheduler.pt is missing"),
    ],
)
def test_torn_checkpoints_are_detected(tmp_path: Path, damage, reason) -> None:
    path = make(tmp_path, 3)
    damage(path)
    assert reason in problem(path)


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt", "trainer_state.json"])
def test_truncation_is_detected_without_a_manifest(tmp_path: Path, name: str) -> None:
    path = make(tmp_path, 3, manifest=False)
    truncate(path / name, 20)
    assert problem(path) is not None


def test_random_states_are_required_without_a_manifest(tmp_path: Path) -> None:
    path = make(tmp_path, 3, manifest=False)
    (path / "rng_state.pth").rename(path / "rng_state_1.pth")  # one of several processes' states is enough
    assert problem(path) is None
    (path / "rng_state_1.pth").unlink()
    assert problem(path) == "rng_state.pth is missing"


def test_auto_resumes_from_the_newest_complete_and_sets_torn_ones_aside(tmp_path: Path) -> None:
    make(tmp_path, 5)
    good = make(tmp_path, 10)
    torn = make(tmp_path, 15)
    truncate(torn / "model.safetensors", 64)
    (tmp_path / "checkpoint-20").mkdir()  # killed before anything was written
    assert resolve_resume("auto", tmp_path) == str(good)
    assert [p.name for _, p in checkpoint.checkpoints(tmp_path)] == ["checkpoint-5", "checkpoint-10"]
    assert len(list((tmp_path / INCOMPLETE_DIR).iterdir())) == 2


def test_other_ranks_only_look(tmp_path: Path) -> None:
    good = make(tmp_path, 10)
    truncate(make(tmp_path, 15) / "optimizer.pt", 10)
    assert resolve_resume("auto", tmp_path, main_process=False) == str(good)
    assert (tmp_path / "checkpoint-15").is_dir()


def test_hosts_resume_from_the_newest_step_complete_on_all_of_them(tmp_path: Path, caplog) -> None:
    """Each host keeps its own checkpoints; a spot loss cut this host's step 15 on another host."""
    make(tmp_path, 5)
    make(tmp_path, 10)
    make(tmp_path, 15)
    assert resolve_resume("auto", tmp_path, everywhere=lambda steps: [s for s in steps if s != 15]) == str(
        tmp_path / "checkpoint-10"
    )
    assert f"skipping newer checkpoint {tmp_path / 'checkpoint-15'} (not complete on every host)" in caplog.text
    assert not (tmp_path / "checkpoint-15").exists()  # Trainer will write step 15 again
    assert resolve_resume("auto", tmp_path, everywhere=lambda steps: []) is None  # nothing in common: start afresh


def test_nothing_to_resume_starts_fresh(tmp_path: Path) -> None:
    assert resolve_resume("auto", tmp_path / "missing") is None
    make(tmp_path, 5)
    assert resolve_resume("never", tmp_path) is None


def test_an_explicit_path_must_be_a_complete_checkpoint(tmp_path: Path) -> None:
    path = make(tmp_path, 3)
    assert resolve_resume(str(path), tmp_path) == str(path)
    with pytest.raises(ConfigError, match="is not a usable checkpoint: it does not exist"):
        resolve_resume(str(tmp_path / "nope"), tmp_path)
    (path / "scheduler.pt").unlink()
    with pytest.raises(ConfigError, match="scheduler.pt is missing"):
        resolve_resume(str(path), tmp_path)


def test_rotation_keeps_the_newest_and_the_best(tmp_path: Path) -> None:
    paths = [make(tmp_path, step) for step in (5, 10, 15, 20)]
    torn = make(tmp_path, 25)
    truncate(torn / "optimizer.pt", 10)
    (tmp_path / INCOMPLETE_DIR).mkdir()
    rotate(tmp_path, keep=1, best=str(paths[0]))
    remaining = [p.name for _, p in checkpoint.checkpoints(tmp_path)]
    # The best (5) and the newest complete (20) stay; a torn newer one does not count as newest.
    assert remaining == ["checkpoint-5", "checkpoint-20", "checkpoint-25"]
    assert not (tmp_path / INCOMPLETE_DIR).exists()


def test_resume_never_moves_an_earlier_run_aside(tmp_path: Path) -> None:
    make(tmp_path, 4)
    assert checkpoint.resolve_resume("never", tmp_path) is None
    assert not list(tmp_path.glob("checkpoint-*"))
    assert [p.name.split("-1")[0] for p in (tmp_path / checkpoint.SUPERSEDED_DIR).iterdir()] == ["checkpoint-4"]


def not_a_torch_archive(path: Path) -> None:
    """A valid zip that torch cannot read, recorded in the manifest as it is (so the checkpoint looks complete)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not a tensor")
    checkpoint.write_manifest(path.parent)


def test_a_complete_checkpoint_that_does_not_load_is_set_aside_for_an_older_one(tmp_path: Path) -> None:
    older, newer = make(tmp_path, 2), make(tmp_path, 4)
    not_a_torch_archive(newer / "optimizer.pt")
    assert checkpoint.problem(newer) is None  # complete by every file check
    model = torch.nn.Linear(8, 8)
    model.state_dict = lambda: {"w": torch.zeros(64)}  # the checkpoints' one tensor
    chosen = checkpoint.resolve_resume("auto", tmp_path, usable=lambda p: checkpoint.load_problem(p, model))
    assert chosen == str(older)
    assert [p.name.rsplit("-", 1)[0] for p in (tmp_path / checkpoint.INCOMPLETE_DIR).iterdir()] == ["checkpoint-4"]
    # Named explicitly, it fails with the checkpoint and the error, and never advises unsafe loading.
    explicit = make(tmp_path / "other", 6)
    not_a_torch_archive(explicit / "scheduler.pt")
    with pytest.raises(ConfigError, match=r"checkpoint-6.*scheduler.pt does not load \(") as failure:
        checkpoint.resolve_resume(str(explicit), tmp_path, usable=lambda p: checkpoint.load_problem(p, model))
    assert "weights_only" not in str(failure.value)


def test_a_checkpoint_of_another_model_does_not_load(tmp_path: Path) -> None:
    path = make(tmp_path, 2)
    model = torch.nn.Linear(8, 8)
    assert "weights belong to another model (2 of 2 tensors unknown)" not in (
        checkpoint.load_problem(path, model) or ""
    )
    assert "1 of 1 tensors unknown" in checkpoint.load_problem(path, model)
    save_file({"weight": torch.zeros(4, 8), "bias": torch.zeros(8)}, str(path / "model.safetensors"))
    assert "weight: (4, 8) here, (8, 8) in it" in checkpoint.load_problem(path, model)
    save_file(dict(model.state_dict()), str(path / "model.safetensors"))
    assert checkpoint.load_problem(path, model) is None


def test_the_manifest_records_the_run(tmp_path: Path) -> None:
    path = make(tmp_path, 1)
    checkpoint.write_manifest(path, run=RUN)
    assert checkpoint.manifest(path)["run"] == RUN
    assert json.loads((path / checkpoint.MANIFEST).read_text())["files"]
