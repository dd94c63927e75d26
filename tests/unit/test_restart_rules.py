"""The rules behind safe restarts, one function at a time: same-run comparison, checkpoint dir placement, loadable
checkpoints, disk-full recognition (#8 items 1, 3, 5, 6)."""

import errno
import json
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sm_train import checkpoint, claim, trajectory
from sm_train.env import from_environ
from sm_train.errors import ConfigError, disk_full_reason, is_disk_full
from tests.unit.test_checkpoint import make

RUN = {"task": "text-classification", "train data": "aa", "tokenizer": "t1", "learning_rate": 5e-05,
       "max_steps": 40, "num_train_epochs": 3.0, "seed": 42, "labels": ["neg", "pos"]}  # fmt: skip


def test_a_changed_trajectory_setting_is_named_old_to_new() -> None:
    changed = trajectory.differences(RUN, {**RUN, "learning_rate": 0.01, "train data": "bb", "labels": ["a", "b"]})
    assert changed == [
        'labels: ["neg", "pos"] -> ["a", "b"]',
        "learning_rate: 5e-05 -> 0.01",
        "train data: its content changed",
    ]


def test_extending_a_run_is_no_change_and_shortening_is() -> None:
    assert trajectory.differences(RUN, {**RUN, "max_steps": 80}) == []
    assert trajectory.differences(RUN, {**RUN, "max_steps": 20}) == [
        "max_steps: 40 -> 20 (may be raised, not lowered)"
    ]
    # With max_steps deciding the length in both runs, the epoch count does not matter.
    assert trajectory.differences(RUN, {**RUN, "num_train_epochs": 1.0}) == []
    # A setting only one side knows (another transformers version) is not compared.
    assert trajectory.differences(RUN, {**RUN, "use_cache": True}) == []


def test_observing_settings_are_free_and_everything_else_counts() -> None:
    class Cfg:
        from dataclasses import dataclass

        @dataclass
        class Job:
            resume: str = "auto"
            save_every_minutes: float | None = None

        @dataclass
        class TaskArgs:
            max_seq_length: int = 128
            n_best_size: int = 20

        class Training:
            def __init__(self, **values: object) -> None:
                self.values = values

            def to_dict(self) -> dict:
                return self.values

        class task_cls:  # noqa: N801
            name = "text-classification"

    def run_of(training: dict, **job) -> dict:
        cfg = Cfg()
        cfg.job, cfg.task_args, cfg.training_args = Cfg.Job(**job), Cfg.TaskArgs(), Cfg.Training(**training)
        return trajectory.identity(cfg, "m", "t", {"train": "d"}, {"labels": ["a"]})

    base = {"learning_rate": 1e-4, "logging_steps": 10, "save_steps": 5, "hub_token": "secret", "optim": "adamw"}
    old = run_of(base)
    assert "hub_token" not in old and "logging_steps" not in old and old["max_seq_length"] == 128
    observed = run_of({**base, "logging_steps": 1, "save_steps": 2}, resume="auto", save_every_minutes=5)
    assert trajectory.differences(old, observed) == []
    assert trajectory.differences(old, run_of({**base, "optim": "sgd"})) == ["optim: adamw -> sgd"]


def test_resume_never_moves_an_earlier_run_aside(tmp_path: Path) -> None:
    make(tmp_path, 4)
    assert checkpoint.resolve_resume("never", tmp_path) is None
    assert not list(tmp_path.glob("checkpoint-*"))
    assert [p.name.split("-1")[0] for p in (tmp_path / checkpoint.SUPERSEDED_DIR).iterdir()] == ["checkpoint-4"]


def env_of(tmp_path: Path):
    (tmp_path / "input" / "data" / "train").mkdir(parents=True)
    return from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})


@pytest.mark.parametrize(
    ("where", "conflict"),
    [
        ("model/ckpts", "is inside the model dir"),
        ("output/checkpoints", "is inside the output dir"),
        ("output/data/ckpt", "is inside the output dir"),
        ("input/data/train/ckpt", "is inside the 'train' input channel"),
        ("code/checkpoints", "is inside the code dir"),
        (".", "contains the model dir"),
    ],
)
def test_a_checkpoint_dir_where_it_loses_data_fails_naming_the_conflict(tmp_path: Path, where, conflict) -> None:
    env = env_of(tmp_path)
    with pytest.raises(ConfigError, match=conflict):
        claim.check_placement(tmp_path / where, env)
    claim.check_placement(tmp_path / "checkpoints", env)  # the default is fine


def test_a_checkpoint_dir_that_is_a_file(tmp_path: Path) -> None:
    env = env_of(tmp_path)
    (tmp_path / "ckpt").write_text("")
    with pytest.raises(ConfigError, match="cannot be created: .*ckpt is a file"):
        claim.check_placement(tmp_path / "ckpt" / "sub", env)


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


def test_disk_full_is_recognised_wherever_it_surfaces(tmp_path: Path) -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    torch_writer = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2048 vs 1960")
    assert is_disk_full(torch_writer)
    try:
        try:
            raise OSError(errno.ENOSPC, "No space")
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as chained:
        assert is_disk_full(chained)
    assert is_disk_full(Exception("Error while serializing: IoError(Os { code: 28, kind: StorageFull })"))
    assert is_disk_full(Exception("SafetensorError: I/O error: No space left on device (os error 28)"))
    assert not is_disk_full(RuntimeError("CUDA out of memory"))
    reason = disk_full_reason(torch_writer, {"the checkpoint dir": tmp_path / "ckpt"})
    assert reason.startswith(f"Disk full: the checkpoint dir {tmp_path / 'ckpt'} has ")
    assert "volume_size" in reason and "save_total_limit" in reason
    assert disk_full_reason(RuntimeError("other"), {"x": tmp_path}) is None


def test_the_manifest_records_the_run(tmp_path: Path) -> None:
    path = make(tmp_path, 1)
    checkpoint.write_manifest(path, run=RUN)
    assert checkpoint.manifest(path)["run"] == RUN
    assert json.loads((path / checkpoint.MANIFEST).read_text())["files"]


def test_a_token_in_the_environment_never_reaches_the_failure_file(tmp_path: Path, monkeypatch) -> None:
    from sm_train import cli, runner
    from tests.jobs import make_tree

    job = make_tree(tmp_path, {"model_name_or_path": "org/model"})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefgh12345")

    def leaky(cfg, env) -> None:  # noqa: ANN001
        raise RuntimeError("request with hf_abcdefgh12345 failed")

    monkeypatch.setattr(runner, "run", leaky)
    assert cli.main(["train"]) == 1
    assert "hf_abcdefgh12345" not in job.failure and "request with *** failed" in job.failure


def test_a_negative_save_total_limit_is_refused(tmp_path: Path) -> None:
    from sm_train.config import parse

    with pytest.raises(ConfigError, match="'save_total_limit' must not be negative, got -1; 0 keeps every"):
        parse([("save_total_limit", -1)], from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)}))
