"""Two hosts through the real toolkit (torchrun --nnodes 2 on this machine): each host keeps whole checkpoints in
its own folder, a spot loss that cut one host's newest checkpoint resumes both hosts from the newest step complete on
both, exactly, and only the first host writes the model (SageMaker merges every host's model dir into one tar)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from sm_train import checkpoint
from tests import tiny
from tests.e2e.test_resume import assert_identical, new_attempt, weights
from tests.jobs import Job, kill_tree, make_tree, start_toolkit, write_rows

pytestmark = pytest.mark.external  # jobs in other processes (make test-fast leaves them out)

HOSTS = ["127.0.0.1", "localhost"]  # both resolve here; the toolkit's master is hosts[0]
HPS = {"max_steps": 40, "save_steps": 5, "logging_steps": 10, "train_batch_size": 4, "learning_rate": 1e-3,
       "seed": 7, "use_cpu": True}  # fmt: skip
DISTRIBUTED = {"sagemaker_torch_distributed_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 1}


def cluster(base: Path, encoder: Path, source: Path) -> list[Job]:
    """One /opt/ml tree per host (each host has its own disk), the same data and hyperparameters."""
    data = write_rows(base / "data" / "train.csv", [{"text": t, "label": y} for t, y in tiny.sentences(96)]).parent
    jobs = []
    for host in HOSTS:
        job = make_tree(base / host, {"model_name_or_path": str(encoder), **HPS}, {"train": data}, source=source,
                        extra=DISTRIBUTED)  # fmt: skip
        resources = {"current_host": host, "hosts": HOSTS, "network_interface_name": "lo"}
        (job.root / "input" / "config" / "resourceconfig.json").write_text(json.dumps(resources))
        jobs.append(job)
    return jobs


def launch(jobs: list[Job]) -> list[subprocess.Popen]:
    return [start_toolkit(job) for job in jobs]


def finish(jobs: list[Job], processes: list[subprocess.Popen]) -> None:
    for job, process in zip(jobs, processes, strict=True):
        job.stdout = process.communicate(timeout=600)[0]
        job.returncode = process.returncode


def host_checkpoints(job: Job, host: str) -> Path:
    return job.root / "checkpoints" / host


@pytest.mark.slow
def test_two_hosts_resume_from_the_newest_step_complete_on_both(tmp_path: Path, source: Path) -> None:
    encoder = tiny.build_encoder(tmp_path / "encoder")

    # An uninterrupted two-host job: host 1 alone writes the model.
    whole = cluster(tmp_path / "whole", encoder, source)
    finish(whole, launch(whole))
    for job in whole:
        assert job.returncode == 0, job.stdout[-4000:]
    assert "torchrun --nnodes 2" in whole[0].stdout
    assert (whole[0].model_dir / "model.safetensors").is_file() and not list(whole[1].model_dir.iterdir())
    for job, host in zip(whole, HOSTS, strict=True):  # whole checkpoints on each host, in its own folder
        assert [p.name for _, p in checkpoint.complete_checkpoints(host_checkpoints(job, host))] == [
            "checkpoint-35",
            "checkpoint-40",
        ]

    # The same job killed on both hosts once each host has a few complete checkpoints.
    jobs = cluster(tmp_path / "spot", encoder, source)
    processes = launch(jobs)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and any(p.poll() is None for p in processes):
        if all(
            len(checkpoint.complete_checkpoints(host_checkpoints(j, h))) >= 2 for j, h in zip(jobs, HOSTS, strict=True)
        ):
            break
        time.sleep(0.05)
    for process in processes:
        kill_tree(process)
    finish(jobs, processes)
    complete = [checkpoint.complete_checkpoints(host_checkpoints(j, h)) for j, h in zip(jobs, HOSTS, strict=True)]
    steps = sorted({step for step, _ in complete[0]} & {step for step, _ in complete[1]})
    assert len(steps) >= 2, complete
    common = [f"checkpoint-{step}" for step in steps]
    # The second host's copy of the newest common step was cut (as a partial upload would leave it).
    newest = host_checkpoints(jobs[1], HOSTS[1]) / common[-1]
    (newest / "model.safetensors").write_bytes((newest / "model.safetensors").read_bytes()[:1000])

    for job in jobs:
        new_attempt(job)
    finish(jobs, launch(jobs))
    for job, host in zip(jobs, HOSTS, strict=True):
        assert job.returncode == 0, job.stdout[-4000:]
        assert f"resuming from {host_checkpoints(job, host) / common[-2]}" in job.stdout, job.stdout[-4000:]
    assert (
        f"skipping newer checkpoint {host_checkpoints(jobs[0], HOSTS[0]) / common[-1]} (not complete on every host)"
        in jobs[0].stdout
    )
    assert_identical(weights(jobs[0]), weights(whole[0]))
