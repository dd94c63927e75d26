"""Spot interruptions: a job killed at random moments, several times, resumes to exactly the weights of a job that
was never interrupted. Each attempt gets a fresh model/output dir and the same checkpoint dir, as on SageMaker."""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sm_train import checkpoint
from tests import tiny
from tests.jobs import REPO, Job, job_env, kill_tree, make_tree, start_toolkit, write_rows

pytestmark = pytest.mark.external  # jobs in other processes (make test-fast leaves them out)

HPS = {"max_steps": 360, "save_steps": 3, "logging_steps": 10, "train_batch_size": 4, "learning_rate": 1e-3,
       "warmup_steps": 5, "seed": 11}  # fmt: skip


def tree(base: Path, encoder: Path, source: Path | None = None, **extra) -> Job:
    rows = [{"text": t, "label": label} for t, label in tiny.sentences(96)]
    write_rows(base / "data" / "train" / "train.csv", rows)
    hps = {"model_name_or_path": str(encoder), **HPS, **extra}
    return make_tree(base, hps, {"train": base / "data" / "train"}, source=source)


def start(job: Job) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sm_train", "train"], env=job_env(job.root), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def finish(process: subprocess.Popen, job: Job) -> Job:
    output, _ = process.communicate(timeout=600)
    job.returncode, job.stdout = process.returncode, output
    return job


def new_attempt(job: Job) -> None:
    """What a restarted spot attempt sees: an empty model and output dir, the checkpoint dir restored."""
    for directory in (job.model_dir, job.root / "output"):
        shutil.rmtree(directory, ignore_errors=True)
    (job.output_data_dir).mkdir(parents=True)
    job.model_dir.mkdir()


def weights(job: Job) -> dict[str, torch.Tensor]:
    return load_file(str(job.model_dir / "model.safetensors"))


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_encoder(tmp_path_factory.mktemp("encoder"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, encoder: Path) -> dict[str, torch.Tensor]:
    job = tree(tmp_path_factory.mktemp("uninterrupted"), encoder)
    finish(start(job), job)
    assert job.returncode == 0, job.stdout[-3000:]
    return weights(job)


def wait_for_training(process: subprocess.Popen, checkpoints: Path, timeout: float = 120) -> None:
    """Until this attempt has written a checkpoint of its own."""
    before = {p.name for p in checkpoints.glob("checkpoint-*")}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if {p.name for p in checkpoints.glob("checkpoint-*")} - before:
            return
        time.sleep(0.02)


def kill_mid_save(process: subprocess.Popen, checkpoints: Path, timeout: float = 120) -> bool:
    """SIGKILL as soon as a checkpoint folder exists that is not yet marked complete."""
    seen = {p.name for p in checkpoints.glob("checkpoint-*")}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for path in checkpoints.glob("checkpoint-*"):
            if path.name not in seen and not (path / "sm_train_checkpoint.json").exists():
                kill_tree(process)
                return True
        time.sleep(0.001)
    return False


def plant_torn(checkpoints: Path) -> None:
    """Newer than anything real: one without its state file, one with truncated weights."""
    _, newest = checkpoint.complete_checkpoints(checkpoints)[-1]  # the last attempt may have left a torn one
    for step, damage in ((998, "trainer_state.json"), (999, "model.safetensors")):
        torn = checkpoints / f"checkpoint-{step}"
        shutil.copytree(newest, torn)
        if damage == "trainer_state.json":
            (torn / damage).unlink()
        else:
            (torn / damage).write_bytes((torn / damage).read_bytes()[:1000])


@pytest.mark.slow
def test_killed_at_random_moments_resumes_exactly(tmp_path: Path, encoder: Path, source: Path, uninterrupted) -> None:
    """Through the real toolkit, every process of the job killed at once (as a spot reclaim stops the container)."""
    job = tree(tmp_path, encoder, source)
    checkpoints = job.root / "checkpoints"
    rng = random.Random(2026)
    kills, torn = 0, []
    for attempt in range(5):
        process = start_toolkit(job)
        if attempt == 2:
            kills += kill_mid_save(process, checkpoints)
        else:
            wait_for_training(process, checkpoints)
            time.sleep(rng.uniform(0.0, 1.5))
            if process.poll() is None:
                kill_tree(process)
                kills += 1
        finish(process, job)
        for path in torn:  # left by the previous attempt
            assert f"skipping incomplete checkpoint {path}" in job.stdout
        torn = [p for _, p in checkpoint.checkpoints(checkpoints) if checkpoint.problem(p)]
        new_attempt(job)
    assert kills >= 3
    plant_torn(checkpoints)
    finish(start_toolkit(job), job)
    assert "checkpoint-998 (trainer_state.json is missing" in job.stdout
    assert "checkpoint-999 (model.safetensors is missing or has the wrong size)" in job.stdout
    assert job.returncode == 0, job.stdout[-3000:]
    assert "resuming from " in job.stdout and "checkpoint-" in job.stdout
    assert_identical(weights(job), uninterrupted)
    state = json.loads(sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
                       .joinpath("trainer_state.json").read_text())  # fmt: skip
    assert state["global_step"] == HPS["max_steps"]


@pytest.mark.slow
def test_sigterm_saves_the_current_step_then_resumes_exactly(tmp_path: Path, encoder: Path, uninterrupted) -> None:
    job = tree(tmp_path, encoder)
    checkpoints = job.root / "checkpoints"
    process = start(job)
    wait_for_training(process, checkpoints)
    time.sleep(0.3)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)  # repeated, as docker stop or a user does: ignored, still exit 143
    finish(process, job)
    assert time.monotonic() - sent < 60
    assert job.returncode == 128 + signal.SIGTERM, job.stdout[-3000:]
    newest = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    step = json.loads((newest / "trainer_state.json").read_text())["global_step"]
    assert 0 < step < HPS["max_steps"]
    assert (newest / "sm_train_checkpoint.json").is_file()
    failure = (job.root / "output" / "failure").read_text()
    assert failure.startswith(f"Stopped by SIGTERM at step {step}: checkpoint-{step} is saved")
    assert not list(job.model_dir.iterdir())  # no final model from an interrupted job
    new_attempt(job)
    finish(start(job), job)
    assert job.returncode == 0 and f"resuming from {newest}" in job.stdout
    assert_identical(weights(job), uninterrupted)


@pytest.mark.slow
def test_time_based_checkpoints(tmp_path: Path, encoder: Path) -> None:
    """save_every_minutes saves although save_strategy=no."""
    job = tree(tmp_path, encoder, save_strategy="no", save_every_minutes=1e-6, max_steps=6)
    finish(start(job), job)
    assert job.returncode == 0, job.stdout[-3000:]
    names = sorted(p.name for p in (job.root / "checkpoints").glob("checkpoint-*"))
    assert names == ["checkpoint-5", "checkpoint-6"]  # a save after every step, rotated to save_total_limit=2


def training_child(launcher: subprocess.Popen, timeout: float = 60) -> int:
    """The PID of the script the toolkit launched (python ... scripts/train.py)."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(launcher.pid).children(recursive=True):
            try:
                cmdline = child.cmdline()
            except psutil.Error:  # a short-lived helper (pip, sh) exited between listing and reading
                continue
            if any(part.endswith("scripts/train.py") for part in cmdline):
                return child.pid
        time.sleep(0.05)
    raise AssertionError("the toolkit did not start the training script")


@pytest.mark.slow
def test_sigterm_to_the_training_process_under_the_real_toolkit(tmp_path, encoder, source, uninterrupted) -> None:
    import os

    from tests.jobs import run_toolkit

    job = tree(tmp_path, encoder, source)
    checkpoints = job.root / "checkpoints"
    launcher = start_toolkit(job)
    child = training_child(launcher)
    wait_for_training(launcher, checkpoints)
    sent = time.monotonic()
    os.kill(child, signal.SIGTERM)
    finish(launcher, job)
    assert time.monotonic() - sent < 60
    assert job.returncode != 0  # the toolkit reports the stopped script as a failure
    failure = (job.root / "output" / "failure").read_text()
    step = int(re.match(r"Stopped by SIGTERM at step (\d+): checkpoint-\d+ is saved", failure).group(1))
    assert checkpoint.problem(checkpoints / f"checkpoint-{step}") is None
    new_attempt(job)
    run_toolkit(job)
    assert job.returncode == 0, job.log[-3000:]
    assert f"resuming from {checkpoints / f'checkpoint-{step}'}" in job.log
    assert_identical(weights(job), uninterrupted)


@pytest.mark.slow
def test_sigterm_grace_runs_out(tmp_path: Path, encoder: Path) -> None:
    """A grace too short for the current step: exit anyway, before SageMaker's SIGKILL would."""
    job = tree(tmp_path, encoder, sigterm_grace_seconds=0.001)
    process = start(job)
    wait_for_training(process, job.root / "checkpoints")
    process.send_signal(signal.SIGTERM)
    finish(process, job)
    assert job.returncode == 128 + signal.SIGTERM
    assert "saving and stopping did not finish within sigterm_grace_seconds=0.001" in job.stdout
    assert job.failure.startswith("Stopped by SIGTERM after step ")  # every signal-ended attempt says why


@pytest.mark.slow
def test_resume_with_another_number_of_processes(tmp_path: Path, encoder: Path, source: Path) -> None:
    """A checkpoint of one process resumed by two (torchrun through the toolkit): it works, with a warning."""
    from tests.jobs import run_toolkit

    job = tree(tmp_path, encoder, source, max_steps=6, use_cpu=True)
    run_toolkit(job)
    assert job.returncode == 0, job.log[-3000:]
    new_attempt(job)
    distributed = {"sagemaker_torch_distributed_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2}
    job = make_tree(tmp_path, {"model_name_or_path": str(encoder), **HPS, "max_steps": 12, "use_cpu": True},
                    {"train": tmp_path / "data" / "train"}, source=source, extra=distributed)  # fmt: skip
    run_toolkit(job)
    assert job.returncode == 0, job.log[-3000:]
    assert "torchrun --nnodes 1 --nproc_per_node 2" in job.log
    assert f"resuming from {job.root / 'checkpoints' / 'checkpoint-6'}" in job.log
    assert "the checkpoint was written by 1 processes and this job runs 2" in job.log
    state = json.loads((job.root / "checkpoints" / "checkpoint-12" / "trainer_state.json").read_text())
    assert state["global_step"] == 12
