"""FSDP with sharded checkpoints (SHARDED_STATE_DICT), two CPU processes under torchrun: a job killed mid-run
resumes from its newest whole sharded checkpoint, not from scratch, and ends with the same weights as a job that was
never interrupted; a torn sharded checkpoint (a shard missing) is set aside; the model dir gets the whole model.

accelerate runs FSDP on accelerators only (CPU processes silently get DDP), so these jobs run with
tests/fsdp_cpu/sitecustomize.py, which keeps the FSDP plugin on CPU: Trainer's FSDP wrapping, saves and resume
are then the ones a GPU job runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sm_train import checkpoint
from tests import tiny
from tests.e2e.test_resume import assert_identical, new_attempt
from tests.jobs import REPO, Job, job_env, kill_tree, make_tree, write_rows

pytestmark = [pytest.mark.external, pytest.mark.slow]

FSDP = {
    "fsdp": "full_shard auto_wrap",
    "fsdp_config": {"transformer_layer_cls_to_wrap": ["BertLayer"], "state_dict_type": "SHARDED_STATE_DICT"},
}
HPS = {"max_steps": 40, "save_steps": 4, "logging_steps": 10, "train_batch_size": 4, "learning_rate": 1e-3,
       "warmup_steps": 3, "seed": 5, "use_cpu": True, **FSDP}  # fmt: skip
TORCHRUN = Path(sys.executable).parent / "torchrun"


def tree(base: Path, encoder: Path) -> Job:
    rows = [{"text": t, "label": label} for t, label in tiny.sentences(96)]
    write_rows(base / "data" / "train" / "train.csv", rows)
    return make_tree(base, {"model_name_or_path": str(encoder), **HPS}, {"train": base / "data" / "train"})


def start(job: Job) -> subprocess.Popen:
    env = job_env(job.root) | {"PYTHONPATH": str(REPO / "tests" / "fsdp_cpu")}
    return subprocess.Popen(
        [str(TORCHRUN), "--nproc_per_node", "2", "-m", "sm_train", "train"], env=env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def finish(process: subprocess.Popen, job: Job) -> Job:
    job.stdout = process.communicate(timeout=600)[0]
    job.returncode = process.returncode
    return job


def sharded_weights(path: Path) -> dict[str, torch.Tensor]:
    """The full tensors of a checkpoint's sharded model (torch.distributed.checkpoint, read in one process)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    target = path.parent.parent / f"{path.name}-weights.pt"
    dcp_to_torch_save(path / "pytorch_model_fsdp_0", target)
    return torch.load(target, weights_only=True)["model"]


def test_killed_fsdp_job_resumes_from_its_sharded_checkpoint(tmp_path: Path) -> None:
    encoder = tiny.build_encoder(tmp_path / "encoder")
    whole = tree(tmp_path / "whole", encoder)
    finish(start(whole), whole)
    assert whole.returncode == 0, whole.stdout[-4000:]
    final = whole.root / "checkpoints" / "checkpoint-40"
    assert (final / "pytorch_model_fsdp_0" / ".metadata").is_file() and not (final / "model.safetensors").exists()
    assert checkpoint.problem(final) is None
    # The model dir gets the whole model, gathered from the shards: the final checkpoint's weights, deployable.
    from safetensors.torch import load_file

    deployed, saved = load_file(str(whole.model_dir / "model.safetensors")), sharded_weights(final)
    assert deployed.keys() == saved.keys()
    assert all(torch.equal(deployed[name], saved[name]) for name in saved)

    job = tree(tmp_path / "spot", encoder)
    checkpoints = job.root / "checkpoints"
    process = start(job)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None and not checkpoint.complete_checkpoints(checkpoints):
        time.sleep(0.01)
    kill_tree(process)
    finish(process, job)
    complete = checkpoint.complete_checkpoints(checkpoints)
    assert complete and complete[-1][0] < 40, job.stdout[-4000:]
    # A newer copy whose second shard never arrived (a partial S3 restore): set aside, never resumed from.
    torn = checkpoints / "checkpoint-39"
    shutil.copytree(complete[-1][1], torn)
    (torn / "pytorch_model_fsdp_0" / "__1_0.distcp").unlink()

    new_attempt(job)
    finish(start(job), job)
    assert job.returncode == 0, job.stdout[-4000:]
    assert f"skipping incomplete checkpoint {torn}" in job.stdout
    assert f"resuming from {complete[-1][1]}" in job.stdout
    assert f"first training step of this attempt done (global step {complete[-1][0] + 1})" in job.stdout
    assert_identical(sharded_weights(checkpoints / "checkpoint-40"), sharded_weights(final))
