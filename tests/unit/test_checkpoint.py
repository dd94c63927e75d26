import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sm_train import checkpoint
from sm_train.checkpoint import INCOMPLETE_DIR, problem, resolve_resume, rotate, write_manifest
from sm_train.errors import ConfigError


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


def test_tokenized_cache_counts_only_once_marked_complete(tmp_path: Path) -> None:
    from datasets import Dataset

    from sm_train import cache

    train = Dataset.from_dict({"input_ids": [[1, 2], [3]]})
    cache.save(tmp_path, "k1", {"train": train})
    assert cache.load(tmp_path, "k1")["train"]["input_ids"] == [[1, 2], [3]]
    arrow = next((tmp_path / cache.CACHE_DIR / "k1").rglob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:-8])  # restored from S3 only in part
    assert cache.load(tmp_path, "k1") is None
    (tmp_path / cache.CACHE_DIR / "k1" / cache.DONE).unlink()  # a write cut before its mark
    assert cache.load(tmp_path, "k1") is None
    cache.save(tmp_path, "k2", {"train": train})  # an unfinished cache is dropped, finished ones are kept
    assert [p.name for p in (tmp_path / cache.CACHE_DIR).iterdir()] == ["k2"]


def test_caches_are_kept_per_key_and_the_least_recently_used_pruned(tmp_path: Path) -> None:
    """Jobs with other settings on one checkpoint dir never delete each other's fresh caches (#8 item 4)."""
    import os

    from datasets import Dataset

    from sm_train import cache

    train = Dataset.from_dict({"input_ids": [[1, 2], [3]]})
    for age, key in enumerate(("k3", "k2", "k1")):
        cache.save(tmp_path, key, {"train": train})
        stamp = 1_000_000 - age * 1000
        os.utime(tmp_path / cache.CACHE_DIR / key / cache.DONE, (stamp, stamp))
    assert cache.load(tmp_path, "k1") is not None  # used now: the most recent
    cache.save(tmp_path, "k4", {"train": train})
    kept = sorted(p.name for p in (tmp_path / cache.CACHE_DIR).iterdir())
    assert kept == ["k1", "k3", "k4"]  # k2 was the least recently used beyond the newest three
