"""Fake /opt/ml trees, the two ways to run a job on them (in-process, and through the real SageMaker toolkit), and what
a finished job must show: its failure and its metric lines."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SOURCE_FILES = ("sm_train", "scripts", "pyproject.toml", "requirements.txt")


@dataclass
class Job:
    """An /opt/ml tree and, after a run, what the job printed and returned."""

    root: Path
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_data_dir(self) -> Path:
        return self.root / "output" / "data"

    @property
    def log(self) -> str:
        """Everything the job printed (the toolkit re-prints the script's stderr on its stdout)."""
        return self.stdout + self.stderr

    @property
    def failure(self) -> str | None:
        path = self.root / "output" / "failure"
        return path.read_text() if path.exists() else None

    def results(self, name: str = "all_results.json") -> dict[str, Any]:
        return json.loads((self.model_dir / name).read_text())


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write rows as csv, tsv, jsonl, json or parquet, by the file's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(list(rows)), encoding="utf-8")
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(list(rows)), path)
    else:
        raise ValueError(path)
    return path


def make_tree(
    base: Path,
    hyperparameters: Mapping[str, Any],
    channels: Mapping[str, Path | None] = (),  # type: ignore[assignment]
    *,
    source: Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Job:
    """An /opt/ml tree with hyperparameters.json encoded as SDK v2 does (json.dumps of every value).

    `channels` maps a channel name to a directory that is already filled in, or None to use root/input/data/<name>.
    """
    root = base / "opt" / "ml"
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    for name in ("model", "output/data", "code"):
        (root / name).mkdir(parents=True, exist_ok=True)
    encoded = {k: json.dumps(v) for k, v in hyperparameters.items()}
    if source is not None:
        encoded |= {
            "sagemaker_program": json.dumps("scripts/train.py"),
            "sagemaker_submit_directory": json.dumps(str(source)),
            "sagemaker_container_log_level": "20",
            "sagemaker_job_name": json.dumps("sm-train-test"),
            "sagemaker_region": json.dumps("us-east-1"),
        }
    encoded |= {k: json.dumps(v) for k, v in (extra or {}).items()}
    (config / "hyperparameters.json").write_text(json.dumps(encoded))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
    )
    data_config = {}
    for name, directory in dict(channels).items():
        target = root / "input" / "data" / name
        if directory is not None and directory != target and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(directory, target_is_directory=True)
        target.mkdir(parents=True, exist_ok=True)
        data_config[name] = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
    (config / "inputdataconfig.json").write_text(json.dumps(data_config))
    return Job(root)


def source_tarball(directory: Path) -> Path:
    """sourcedir.tar.gz of the repository, as the SageMaker SDK uploads source_dir."""
    path = directory / "sourcedir.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in SOURCE_FILES:
            if (REPO / name).exists():
                tar.add(REPO / name, arcname=name, filter=lambda t: None if "__pycache__" in t.name else t)
    return path


def job_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_") and k != "SAGEMAKER_BASE_DIR"}
    env |= {
        "SAGEMAKER_BASE_DIR": str(root),
        "PYTHONPATH": str(REPO / "tests" / "netguard"),
    }
    return env


TOOLKIT = Path(sys.executable).parent / "train"  # the sagemaker-training console script


def toolkit_env(root: Path) -> dict[str, str]:
    """The environment of a training container around the toolkit, on an /opt/ml tree relocated to `root`."""
    return job_env(root) | {
        "SM_STUDIO_LOCAL_MODE": "true",  # skips the toolkit's 15-minute wait for algo-1 in DNS
        "TRAINING_JOB_NAME": "sm-train-test",
        "SAGEMAKER_TRAINING_MODULE": "sagemaker_pytorch_container.training:main",
        # The launchers (torchrun) are found on PATH, as in a container.
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }


def start_toolkit(job: Job) -> subprocess.Popen:
    """The toolkit started on the tree, its output (the script's included) on one pipe."""
    return subprocess.Popen(
        [str(TOOLKIT)], env=toolkit_env(job.root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def run_toolkit(job: Job, timeout: int = 600) -> Job:
    """Run the job through the real sagemaker-training toolkit with the PyTorch DLC launcher module."""
    done = subprocess.run([str(TOOLKIT)], env=toolkit_env(job.root), capture_output=True, text=True, timeout=timeout)
    job.returncode, job.stdout, job.stderr = done.returncode, done.stdout, done.stderr
    return job


def run_module(job: Job, argv: Sequence[str] = (), timeout: int = 600) -> Job:
    """Run `python -m sm_train` on the tree, as our own container image will."""
    done = subprocess.run(
        [sys.executable, "-m", "sm_train", *argv],
        env=job_env(job.root),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    job.returncode, job.stdout, job.stderr = done.returncode, done.stdout, done.stderr
    return job


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process and all its descendants at once, as a spot reclaim stops a container (torchrun's workers
    have sessions of their own, so killing a process group would miss them)."""
    import psutil

    try:
        everyone = [psutil.Process(process.pid)]
        everyone += everyone[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for member in everyone:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()


def assert_fails(job: Job, pattern: str) -> None:
    """A failed job: a non-zero exit, the reason (pattern) on the first line of a short failure file, the traceback in
    the log, and no model files."""
    assert job.returncode != 0
    failure = job.failure
    assert failure is not None and len(failure) <= 1024
    assert re.search(pattern, failure.splitlines()[0]), failure
    assert "unexpected error" not in failure  # a user's mistake is named as one
    assert "Traceback" in job.log  # the full traceback is in the log
    assert not list(job.model_dir.iterdir()), "a failed job must leave no model files"


def assert_metric_lines_captured(stdout: str, task: str) -> None:
    """Every metric line a real job printed is read back, name and value, by exactly one of the definitions that
    `python -m sm_train metric-definitions --task <task>` prints (tests/unit/test_cli.py: the same list)."""
    from sm_train.metrics import metric_definitions
    from sm_train.tasks import TASKS

    definitions = metric_definitions(TASKS[task].metric_names)
    lines = re.findall(r"^\[metric\] (\w+) = (\S+)$", stdout, flags=re.MULTILINE)
    assert any(name.startswith("eval_") for name, _ in lines), "no evaluation metric lines in the log"
    for name, value in lines:
        line = f"[metric] {name} = {value}"
        captured = [(d["Name"], found[1]) for d in definitions if (found := re.search(d["Regex"], line))]
        assert captured == [(name, value)], f"metric-definitions --task {task} reads {line!r} as {captured}"
