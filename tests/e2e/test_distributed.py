"""Data parallelism on CPU processes (gloo), as users launch it: the toolkit's torchrun without use_cpu, two hosts
without a distribution flag (sm_train relaunches under torchrun), an MPI launch that sets only Open MPI's variables.
Each trains as one job: data sharded, each metric line once, one model, and the loss and weights of the one-process
job over the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sm_train import checkpoint, cli
from tests import tiny
from tests.e2e.conftest import TF4_PYTHON
from tests.jobs import REPO, Job, job_env, make_tree, start_toolkit, write_rows

ROWS = [{"text": t, "label": y} for t, y in tiny.sentences(48)]
# Same global batch (8) in every layout; sequential order, no dropout and plain SGD: runs of different shapes agree.
HPS = {"num_train_epochs": 1, "learning_rate": 0.1, "optim": "sgd", "max_grad_norm": 0, "seed": 3,
       "train_sampling_strategy": "sequential", "save_steps": 3, "logging_steps": 3}  # fmt: skip
STEPS = [3, 6]  # 48 rows / global batch 8


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_encoder(tmp_path_factory.mktemp("encoder"), dropout=0.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rows(tmp_path_factory.mktemp("data") / "train.jsonl", ROWS).parent


def tree(base: Path, encoder: Path, data: Path, batch: int, **extra) -> Job:
    hps = {"model_name_or_path": str(encoder), **HPS, "per_device_train_batch_size": batch, **extra.pop("hps", {})}
    return make_tree(base, hps, {"train": data}, **extra)


def one_process(base: Path, encoder: Path, data: Path, monkeypatch: pytest.MonkeyPatch, **hps) -> Job:
    job = tree(base, encoder, data, 8, hps=hps)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    job.returncode = cli.main(["train"])
    assert job.returncode == 0, job.failure
    return job


def weights(job: Job) -> dict[str, torch.Tensor]:
    return load_file(str(job.model_dir / "model.safetensors"))


def assert_same_training(job: Job, reference: Job) -> None:
    """The loss means the same and the gradients were the same (float summation order aside)."""
    ours, theirs = job.results(), reference.results()
    assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-5)
    a, b = weights(job), weights(reference)
    worst = max((a[name] - b[name]).abs().max().item() for name in a)
    assert worst < 1e-5, f"weights differ by up to {worst}"


def steps(checkpoints: Path) -> list[int]:
    return [step for step, _ in checkpoint.complete_checkpoints(checkpoints)]


def test_gradient_accumulation_equals_one_big_batch(tmp_path, monkeypatch, encoder, data) -> None:
    """transformers 5 skipped the division by gradient_accumulation_steps for BERT's heads: twice the gradients."""
    big = one_process(tmp_path / "big", encoder, data, monkeypatch)
    accumulated = tree(tmp_path / "acc", encoder, data, 4, hps={"gradient_accumulation_steps": 2})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(accumulated.root))
    assert cli.main(["train"]) == 0, accumulated.failure
    assert_same_training(accumulated, big)


def finish(process: subprocess.Popen, job: Job, timeout: int = 600) -> Job:
    job.stdout = process.communicate(timeout=timeout)[0]
    job.returncode = process.returncode
    assert job.returncode == 0, job.stdout[-4000:]
    return job


def assert_one_job(job: Job, checkpoints: Path) -> None:
    """Sharded data (the optimizer steps of a global batch of 8), each metric line once, one model."""
    assert steps(checkpoints) == STEPS
    assert job.stdout.count("[metric] train_loss = ") == 1, job.stdout[-4000:]
    assert (job.model_dir / "model.safetensors").is_file()


@pytest.mark.external
def test_toolkit_torchrun_on_cpu_without_use_cpu(tmp_path, monkeypatch, encoder, data, source) -> None:
    """Two processes on one CPU host, as a new user launches them (no use_cpu): data parallel, not two copies."""
    framework = {"sagemaker_torch_distributed_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2}
    job = tree(tmp_path / "two", encoder, data, 4, source=source, extra=framework)
    finish(start_toolkit(job), job)
    assert "data parallel over gloo on the CPU (use_cpu=true)" in job.stdout
    assert_one_job(job, job.root / "checkpoints")
    assert_same_training(job, one_process(tmp_path / "one", encoder, data, monkeypatch))


@pytest.mark.external
def test_two_hosts_without_a_distribution_flag_train_as_one_job(tmp_path, encoder, data, source) -> None:
    hosts = ["127.0.0.1", "localhost"]
    jobs, processes = [], []
    for host in hosts:
        job = tree(tmp_path / host, encoder, data, 4, source=source)
        resources = {"current_host": host, "hosts": hosts, "network_interface_name": "lo"}
        (job.root / "input" / "config" / "resourceconfig.json").write_text(json.dumps(resources))
        jobs.append(job)
        processes.append(start_toolkit(job))
    for job, process in zip(jobs, processes, strict=True):
        finish(process, job)
        assert "relaunching under torchrun" in job.stdout and "--nnodes=2" in job.stdout
    assert_one_job(jobs[0], jobs[0].root / "checkpoints" / hosts[0])
    assert steps(jobs[1].root / "checkpoints" / hosts[1]) == STEPS and not list(jobs[1].model_dir.iterdir())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mpi_ranks(job: Job, python: str, size: int = 2) -> list[subprocess.Popen]:
    """What mpirun leaves a rank: Open MPI's variables only (no RANK, WORLD_SIZE, MASTER_ADDR)."""
    base = job_env(job.root) | {"MASTER_PORT": str(free_port())}
    ranks = []
    for rank in range(size):
        variables = {"RANK": rank, "SIZE": size, "LOCAL_RANK": rank, "LOCAL_SIZE": size, "NODE_RANK": 0}
        env = base | {f"OMPI_COMM_WORLD_{k}": str(v) for k, v in variables.items()}
        ranks.append(subprocess.Popen([python, "-m", "sm_train", "train"], env=env, cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))  # fmt: skip
    return ranks


@pytest.mark.external
@pytest.mark.parametrize("python", [sys.executable, str(TF4_PYTHON)], ids=["transformers5", "transformers4"])
def test_an_mpi_launch_trains_as_one_job(tmp_path, monkeypatch, encoder, data, python) -> None:
    if python != sys.executable:  # a model saved by transformers 5 names a tokenizer class 4.x lacks
        env = job_env(tmp_path) | {"PYTHONPATH": f"{REPO}:{REPO / 'tests' / 'netguard'}"}
        build = "import sys; from pathlib import Path; from tests import tiny; tiny.build_encoder(Path(sys.argv[1]))"
        subprocess.run([python, "-c", build, str(tmp_path / "enc4")], env=env, check=True, cwd=REPO)
        encoder = tmp_path / "enc4"
    job = tree(tmp_path / "mpi", encoder, data, 4)
    job.stdout = "\n".join(finish(rank, Job(job.root)).stdout for rank in mpi_ranks(job, python))
    assert_one_job(job, job.root / "checkpoints")
    if python == sys.executable:  # transformers 4.x cannot sample in order (no train_sampling_strategy) to compare
        assert_same_training(job, one_process(tmp_path / "one", encoder, data, monkeypatch))


@pytest.mark.external
def test_question_answering_evaluation_is_the_same_in_two_processes(tmp_path, monkeypatch) -> None:
    """The evaluation windows split over the ranks and gathered back score as in one process."""
    encoder = tiny.build_encoder(tmp_path / "encoder")
    rows = write_rows(tmp_path / "data" / "v.jsonl", tiny.qa_rows(41, seed=5)).parent
    hps = {"task": "question-answering", "model_name_or_path": str(encoder), "do_train": False,
           "per_device_eval_batch_size": 3, "max_seq_length": 64, "doc_stride": 24}  # fmt: skip
    two = make_tree(tmp_path / "two", hps, {"validation": rows})
    two.stdout = "\n".join(finish(rank, Job(two.root)).stdout for rank in mpi_ranks(two, sys.executable))
    one = make_tree(tmp_path / "one", hps, {"validation": rows})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(one.root))
    assert cli.main(["train"]) == 0, one.failure
    assert two.stdout.count("[metric] eval_f1 = ") == 1
    for name in ("eval_exact_match", "eval_f1", "eval_samples"):
        assert two.results()[name] == one.results()[name]
    assert two.results()["eval_loss"] == pytest.approx(one.results()["eval_loss"], abs=1e-5)
    predictions = [json.loads((j.output_data_dir / "eval_predictions.json").read_text()) for j in (one, two)]
    assert predictions[0] == predictions[1]


@pytest.mark.external
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="Open MPI's mpirun is not installed")
def test_real_mpirun(tmp_path, encoder, data) -> None:
    job = tree(tmp_path / "mpirun", encoder, data, 4)
    env = job_env(job.root) | {"MASTER_PORT": str(free_port())}
    command = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2",
               *(f for name in ("SAGEMAKER_BASE_DIR", "PYTHONPATH", "MASTER_PORT") for f in ("-x", name)),
               sys.executable, "-m", "sm_train", "train"]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    job.returncode, job.stdout = done.returncode, done.stdout + done.stderr
    assert job.returncode == 0, job.stdout[-4000:]
    assert_one_job(job, job.root / "checkpoints")
    assert os.environ.get("OMPI_COMM_WORLD_SIZE") is None  # nothing leaked into this process
