"""Jobs on the GPU as a user's job runs: `python -m sm_train train` in a process of its own on an /opt/ml tree
(tests/jobs.py builds it), with sm_train's defaults for the device, its output in a file.

The process keeps this one's PYTHONPATH: where the machine has only the project and its wheels (make test-gpu),
datasets and rouge-score are found there, not in site-packages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.jobs import REPO, Job, job_env


def env(job: Job, **extra: str) -> dict[str, str]:
    found = job_env(job.root) | {"HF_DATASETS_CACHE": str(job.root.parent.parent / "hf-datasets"), **extra}
    if os.environ.get("PYTHONPATH"):
        found["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
    return found


def log_file(job: Job) -> Path:
    return job.root.parent.parent / "job.log"


def start(job: Job, **extra: str) -> subprocess.Popen:
    """The job started; this attempt's output goes to a file (a pipe nobody reads while it runs could fill up and
    stall the job)."""
    with log_file(job).open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sm_train", "train"], env=env(job, **extra), cwd=REPO, stdout=out,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


def finish(process: subprocess.Popen, job: Job, timeout: float = 300) -> Job:
    """Wait for the job: its returncode, and in stdout what this attempt printed."""
    try:
        job.returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()  # a hung job must not hold the GPU for the tests after it
        raise
    job.stdout = log_file(job).read_text()
    return job


def run(job: Job, **extra: str) -> Job:
    return finish(start(job, **extra), job)


def resolved_config(job: Job) -> dict[str, Any]:
    """What the job ran with (sm_train_config.json): training arguments as resolved, the environment it saw."""
    return json.loads((job.output_data_dir / "sm_train_config.json").read_text())
