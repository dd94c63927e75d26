"""A spot interruption on the GPU: SIGTERM mid-training saves the current step and stops, the next attempt (a fresh
model dir, the same checkpoint dir) resumes from it, and the final weights are bit-identical to those of a job on
the same GPU that was never interrupted (tests/e2e/test_resume.py does the same on CPU).

Every job here sets full_determinism (transformers' enable_full_determinism: deterministic algorithms and cuDNN)
and cuBLAS's fixed workspace (CUBLAS_WORKSPACE_CONFIG, read when cuBLAS starts, so set in the job's environment):
some GPU kernels (attention's backward, cuBLAS reductions split over blocks) add in an order that varies from run to
run, so two uninterrupted runs could already differ in the last bits, and the comparison would say nothing about
resuming. Everything else is the GPU defaults (bf16 or fp16, the pad multiple, dataloader workers)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests import tiny
from tests.e2e.test_resume import assert_identical, new_attempt, wait_for_training, weights
from tests.gpu.jobs import finish, run, start
from tests.jobs import Job, make_tree, write_rows

pytestmark = pytest.mark.gpu

HPS = {"max_steps": 480, "save_steps": 20, "logging_steps": 40, "train_batch_size": 4, "learning_rate": 1e-3,
       "warmup_steps": 5, "seed": 11, "full_determinism": True}  # fmt: skip
DETERMINISTIC = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def tree(base: Path, encoder: Path) -> Job:
    write_rows(base / "data" / "train" / "train.csv", [{"text": t, "label": label} for t, label in tiny.sentences(96)])
    return make_tree(base, {"model_name_or_path": str(encoder), **HPS}, {"train": base / "data" / "train"})


def test_sigterm_on_the_gpu_then_resume_gives_the_same_weights(tmp_path: Path) -> None:
    encoder = tiny.build_encoder(tmp_path / "encoder")
    whole = run(tree(tmp_path / "uninterrupted", encoder), **DETERMINISTIC)
    assert whole.returncode == 0, whole.log[-4000:]
    assert "mixed precision: " in whole.log and "batches padded to a multiple of 64 tokens" in whole.log

    job = tree(tmp_path / "interrupted", encoder)
    checkpoints = job.root / "checkpoints"
    process = start(job, **DETERMINISTIC)
    wait_for_training(process, checkpoints)
    time.sleep(0.2)  # mid-training, most likely between two scheduled saves
    process.send_signal(signal.SIGTERM)
    finish(process, job)
    assert job.returncode == 128 + signal.SIGTERM, job.log[-4000:]
    newest = max(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    step = json.loads((newest / "trainer_state.json").read_text())["global_step"]
    assert 0 < step < HPS["max_steps"], "SIGTERM came after the last step: raise max_steps"
    assert job.failure.startswith(f"Stopped by SIGTERM at step {step}: checkpoint-{step} is saved")

    new_attempt(job)
    run(job, **DETERMINISTIC)
    assert job.returncode == 0, job.log[-4000:]
    assert f"resuming from {newest}" in job.log
    assert_identical(weights(job), weights(whole))
