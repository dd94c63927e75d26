"""Restarts that cannot go wrong: a restart resumes only the same run, never trains past its end,
skips checkpoints that do not load, and every way a job ends early leaves a specific failure reason."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from safetensors.torch import load_file

from sm_train import checkpoint
from sm_train.tasks.text_classification import TextClassification
from tests import tiny
from tests.e2e.test_jobs import ROWS, channels, run
from tests.jobs import REPO, Job, job_env, make_tree, write_rows

HPS = {"max_steps": 4, "save_steps": 2, "learning_rate": 5e-05, "train_batch_size": 8, "max_seq_length": 32}


def new_attempt(job: Job) -> None:
    """A restarted attempt: the checkpoint dir restored, model and output dirs empty."""
    for directory in (job.model_dir, job.root / "output"):
        shutil.rmtree(directory)
    job.output_data_dir.mkdir(parents=True)
    job.model_dir.mkdir()


def steps(job: Job) -> list[int]:
    return sorted(step for step, _ in checkpoint.checkpoints(job.root / "checkpoints"))


def test_a_restart_resumes_only_the_same_run(tmp_path, monkeypatch, tiny_encoder) -> None:
    hps = {"model_name_or_path": str(tiny_encoder), **HPS}
    data = channels(tmp_path, ROWS)
    job = run(tmp_path, monkeypatch, hps, data)
    assert job.returncode == 0, job.failure
    before = steps(job)

    # The learning rate changed in hyperparameters.json (and the run extended): refused before training.
    new_attempt(job)
    job = run(tmp_path, monkeypatch, {**hps, "learning_rate": 0.01, "max_steps": 8}, data)
    assert job.returncode == 1
    assert "Changed: learning_rate: 5e-05 -> 0.01." in job.failure
    assert "resume=never" in job.failure and "new checkpoint location" in job.failure
    assert steps(job) == before and not list(job.model_dir.iterdir())

    # Replaced training data: refused too.
    new_attempt(job)
    write_rows(data["train"] / "train.jsonl", [{"text": t, "label": label} for t, label in tiny.sentences(24, seed=5)])
    job = run(tmp_path, monkeypatch, {**hps, "max_steps": 8}, data)
    assert job.returncode == 1 and "train data: its content changed" in job.failure
    write_rows(data["train"] / "train.jsonl", ROWS)

    # Extended and observed differently: resumes, and the records describe the run that made the weights.
    new_attempt(job)
    job = run(tmp_path, monkeypatch, {**hps, "max_steps": 6, "logging_steps": 1, "save_total_limit": 5}, data)
    assert job.returncode == 0, job.failure
    written = json.loads((job.output_data_dir / "sm_train_config.json").read_text())
    assert written["resumed_from"].endswith("checkpoint-4")
    assert written["training_args"]["learning_rate"] == 5e-05
    assert written["training_args"]["save_total_limit"] == 5  # as resolved: Trainer's copy has rotation off

    # resume=never: a fresh run; the earlier run's checkpoints are moved aside, not deleted.
    new_attempt(job)
    job = run(tmp_path, monkeypatch, {**hps, "learning_rate": 0.01, "resume": "never"}, data)
    assert job.returncode == 0, job.failure
    assert steps(job) == [2, 4]
    superseded = job.root / "checkpoints" / checkpoint.SUPERSEDED_DIR
    assert sorted(p.name.rsplit("-", 1)[0] for p in superseded.iterdir()) == [f"checkpoint-{s}" for s in (2, 4, 6)]


@pytest.mark.parametrize(
    "length",
    [{"max_steps": 4, "save_steps": 2}, {"num_train_epochs": 1.5, "save_steps": 5}],  # 3 steps per epoch: 5 steps
    ids=["max_steps", "fractional-epochs"],
)
def test_a_restart_from_the_final_checkpoint_trains_no_further(tmp_path, monkeypatch, tiny_encoder, length) -> None:
    """Killed during the final evaluation or save: the restart evaluates and saves what the whole run would."""
    hps = {"model_name_or_path": str(tiny_encoder), "train_batch_size": 8, **length}
    data = channels(tmp_path, ROWS, ROWS[:8])
    job = run(tmp_path, monkeypatch, hps, data)
    assert job.returncode == 0, job.failure
    last = steps(job)[-1]
    whole, whole_eval = load_file(str(job.model_dir / "model.safetensors")), job.results("eval_results.json")
    new_attempt(job)
    job = run(tmp_path, monkeypatch, hps, data)
    assert job.returncode == 0, job.failure
    assert steps(job)[-1] == last  # no checkpoint past the end
    restarted = load_file(str(job.model_dir / "model.safetensors"))
    assert all(restarted[name].equal(whole[name]) for name in whole)
    assert metrics(job.results("eval_results.json")) == metrics(whole_eval)


def metrics(results: dict) -> dict:
    return {k: v for k, v in results.items() if not k.endswith(("_runtime", "_per_second"))}


def test_a_checkpoint_dir_inside_the_model_dir_fails_fast(tmp_path, monkeypatch, tiny_encoder) -> None:
    root = tmp_path / "opt" / "ml"
    hps = {"model_name_or_path": str(tiny_encoder), **HPS, "checkpoint_dir": str(root / "model" / "ckpts")}
    job = run(tmp_path, monkeypatch, hps, channels(tmp_path, ROWS))
    assert job.returncode == 1
    assert job.failure.startswith(f"The checkpoint dir {root / 'model' / 'ckpts'} is inside the model dir")
    assert not list(job.model_dir.iterdir())


def test_a_complete_checkpoint_that_does_not_load_is_skipped(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    hps = {"model_name_or_path": str(tiny_encoder), **HPS, "save_total_limit": 0}
    data = channels(tmp_path, ROWS)
    job = run(tmp_path, monkeypatch, hps, data)
    assert job.returncode == 0, job.failure
    newest = job.root / "checkpoints" / "checkpoint-4"
    run_record = checkpoint.manifest(newest)["run"]
    with zipfile.ZipFile(newest / "optimizer.pt", "w") as archive:  # a valid zip, not a torch archive
        archive.writestr("data.txt", "not a tensor")
    checkpoint.write_manifest(newest, run=run_record)  # and marked complete
    new_attempt(job)
    job = run(tmp_path, monkeypatch, {**hps, "max_steps": 6}, data)
    assert job.returncode == 0, job.failure
    log = capsys.readouterr().err
    assert "skipping unloadable checkpoint" in log and "optimizer.pt does not load (RuntimeError: " in log
    assert f"resuming from {job.root / 'checkpoints' / 'checkpoint-2'}" in log
    assert "weights_only=False" not in log
    assert steps(job) == [2, 4, 6]  # steps 3 and 4 trained again


def start(job: Job) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sm_train", "train"], env=job_env(job.root), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


@pytest.mark.external
def test_a_second_job_on_a_busy_checkpoint_dir_fails_and_the_first_finishes(
    tmp_path, monkeypatch, tiny_encoder
) -> None:
    shared = tmp_path / "shared-checkpoints"
    hps = {
        "model_name_or_path": str(tiny_encoder),
        **HPS,
        "max_steps": 60,
        "save_steps": 20,
        "checkpoint_dir": str(shared),
    }
    first = make_tree(tmp_path / "first", hps, channels(tmp_path, ROWS))
    process = start(first)
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline and '"pid"' not in _read(shared / ".sm_train_owner"):
        time.sleep(0.05)
    second = run(tmp_path / "second", monkeypatch, {**hps, "learning_rate": 1e-3}, channels(tmp_path, ROWS))
    assert second.returncode == 1
    assert f"The checkpoint dir {shared} is in use by another running job" in second.failure
    assert f'"pid": {process.pid}' in second.failure
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]


def _read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


class SlowPreprocessing(TextClassification):
    """Tokenizes slowly enough to be stopped in the middle (used as task=tests.e2e.test_restarts:SlowPreprocessing)."""

    name = "text-classification"

    def preprocess(self, split, *, training, num_proc=None):  # noqa: ANN001, ANN201
        print("preprocessing now", file=sys.stderr, flush=True)
        time.sleep(120)


def catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler of its own for `signum` (Linux: the SigCgt mask of /proc/<pid>/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.MULTILINE)[1], 16)
    return bool(caught >> (signum - 1) & 1)


@pytest.mark.external
@pytest.mark.parametrize("when", ["while starting", "while preprocessing"])
def test_a_signal_before_training_writes_the_failure_file(tmp_path, tiny_encoder, when) -> None:
    task = "tests.e2e.test_restarts:SlowPreprocessing"
    job = make_tree(tmp_path, {"model_name_or_path": str(tiny_encoder), **HPS, "task": task}, channels(tmp_path, ROWS))
    process = start(job)
    if when == "while starting":
        # The starting phase's handler is installed before transformers is imported, which takes seconds: signal as
        # soon as the process catches SIGTERM, not after a guessed delay (too early: killed by the default action).
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline and not catches(process.pid, signal.SIGTERM):
            time.sleep(0.01)
    else:
        for line in process.stdout:
            if "preprocessing now" in line:
                break
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)  # repeated, as docker stop or a user does: ignored, still exit 143
    process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    if when == "while starting":
        assert job.failure == "Stopped by SIGTERM while starting: this attempt trained and saved nothing."
    else:
        assert job.failure == (
            "Stopped by SIGTERM before training started (while loading or preprocessing): this attempt trained and "
            "saved nothing; no checkpoint exists yet, so a restarted job starts from the beginning."
        )


@pytest.fixture
def small_volume(tmp_path: Path):
    """Mount a tmpfs of the given size at a path (needs root; skipped where tmpfs cannot be mounted)."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("full", ["checkpoint", "model"])
def test_disk_full_names_the_directory(tmp_path, monkeypatch, tiny_encoder, small_volume, full) -> None:
    job = make_tree(tmp_path, {"model_name_or_path": str(tiny_encoder), **HPS}, channels(tmp_path, ROWS))
    volume = small_volume(job.root / ("checkpoints" if full == "checkpoint" else "model"), "200k")
    if full == "model":
        (volume / "filler").write_bytes(b"\0" * 150_000)  # room for the config, not the weights
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    from sm_train import cli

    assert cli.main(["train"]) == 1
    assert job.failure.startswith(f"Disk full: the {full} dir {volume} has ")
    assert "volume_size" in job.failure and "unexpected error" not in job.failure
