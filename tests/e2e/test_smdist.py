"""SageMaker's distributed libraries in real processes, with test stand-ins (tests/standins) for the libraries.

SMDDP: two ranks started by real mpirun (Open MPI's variables only) get an `smddp` process group from
TrainingArguments' own device setup once smdist's variables are exported, and none without them. The SageMaker
toolkit itself cannot start an SMDDP or MPI launch here (no /usr/sbin/sshd: RuntimeError before the script runs).
SMP v2 and the failures (SMP v1, a missing library, SMDDP asked for) run whole jobs: they need smdist wired into
cli.py and runner.py, and are skipped until it is.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sm_train import smdist
from tests import tiny
from tests.e2e.conftest import TF4_PYTHON
from tests.e2e.test_jobs import FAST, ROWS, channels, run
from tests.jobs import REPO, TOOLKIT, Job, assert_fails, make_tree, toolkit_env, write_rows

STANDINS = REPO / "tests" / "standins"
NETGUARD = REPO / "tests" / "netguard"
SMDDP = {"sagemaker_distributed_dataparallel_enabled": True, "sagemaker_instance_type": "ml.p4d.24xlarge"}
V1 = {"partitions": 2, "microbatches": 4}
V2 = {"hybrid_shard_degree": 2}
FSDP = {"fsdp": "full_shard auto_wrap", "fsdp_config": {"transformer_layer_cls_to_wrap": ["BertLayer"]}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mpirun_ranks(python: Path, mode: str, scratch: Path) -> list[dict[str, Any]]:
    """Two ranks of tests/e2e/smddp_rank.py under mpirun, as SageMaker's SMDataParallel launcher starts them."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "OMPI_", "PYTHON"))}
    environ |= {
        "SM_FRAMEWORK_PARAMS": json.dumps(SMDDP),
        "PYTHONPATH": os.pathsep.join(map(str, (STANDINS / "smddp", NETGUARD, REPO))),
        "MASTER_PORT": str(free_port()),
    }
    command = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", str(python),
               str(REPO / "tests" / "e2e" / "smddp_rank.py"), mode, str(scratch)]  # fmt: skip
    done = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=300, cwd=scratch)
    results = [json.loads(line.split("RESULT ", 1)[1]) for line in done.stdout.splitlines() if "RESULT " in line]
    assert len(results) == 2, done.stdout[-3000:] + done.stderr[-3000:]
    return sorted(results, key=lambda r: r.get("rank", 0))


@pytest.mark.external
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs Open MPI's mpirun")
@pytest.mark.parametrize("python", [Path(sys.executable), TF4_PYTHON], ids=["transformers5", "transformers4"])
def test_smddp_group_from_an_mpirun_launch(tmp_path: Path, python: Path) -> None:
    if not python.exists():
        pytest.skip(f"{python} is missing: `make test` installs it")
    ranks = mpirun_ranks(python, "export", tmp_path)
    for rank, result in enumerate(ranks):
        assert result["initialized"] and result["backend"] == "smddp" and result["world"] == 2
        assert result["rank"] == rank and result["sum"] == 3.0  # the group works: 1 + 2 over both ranks
        created = result["created"][0]
        assert created["RANK"] == created["LOCAL_RANK"] == created["SMDATAPARALLEL_LOCAL_RANK"] == str(rank)
        assert created["WORLD_SIZE"] == "2" and created["size"] == 2
        # Only the device step after the group fails, and only because this machine has no GPU.
        assert result["error"] is None or result["error"].startswith("ZeroDivisionError")
    for result in mpirun_ranks(python, "bare", tmp_path):  # without the variables accelerate never joins a group
        assert not result["initialized"] and "Default process group has not been initialized" in result["error"]


# --- whole jobs (after wiring) -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "standin", "says"),
    [
        (SMDDP, False, r"smdistributed dataparallel.*does not import in this image"),
        ({**SMDDP, "sagemaker_instance_type": "ml.g5.12xlarge"}, True, r"it does not support ml.g5.12xlarge"),
        (SMDDP, True, r"it supports PyTorch 2.5 and older, and this image has PyTorch 2\."),
    ],
)
def test_smddp_job_fails_at_once_naming_torch_distributed(tmp_path: Path, extra: dict, standin: bool, says: str,
                                                          tiny_encoder: Path) -> None:  # fmt: skip
    job = make_tree(tmp_path, {"model_name_or_path": str(tiny_encoder), **FAST}, channels(tmp_path, ROWS),
                    extra=extra)  # fmt: skip
    path = [STANDINS / "smddp"] if standin else []
    environ = {
        **os.environ,
        "SAGEMAKER_BASE_DIR": str(job.root),
        "PYTHONPATH": os.pathsep.join(map(str, [*path, NETGUARD])),
    }
    done = subprocess.run([sys.executable, "-m", "sm_train"], env=environ, capture_output=True, text=True,
                          timeout=300, cwd=REPO)  # fmt: skip
    job.returncode, job.stdout, job.stderr = done.returncode, done.stdout, done.stderr
    assert_fails(job, says)
    assert 'distribution={"torch_distributed": {"enabled": True}}' in job.failure
    assert "LOAD REPORT" not in job.log and "hyperparameters (" not in job.log  # before parsing, before any model


@pytest.mark.parametrize(
    ("mp", "says"),
    [(V1, r"model parallel v1 settings \(microbatches, partitions\)"), (V2, r"torch.sagemaker does not import")],
)
def test_model_parallel_job_fails_naming_fsdp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, mp: dict,
                                               says: str, tiny_encoder: Path) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "torch.sagemaker", None)
    job = run(tmp_path, monkeypatch, {"model_name_or_path": str(tiny_encoder), "mp_parameters": mp, **FSDP},
              channels(tmp_path, ROWS))  # fmt: skip
    job.stdout, job.stderr = capsys.readouterr()
    assert_fails(job, says)
    assert '"fsdp": "full_shard auto_wrap"' in job.failure


def toolkit_job(tmp_path: Path, source: Path, hyperparameters: dict, extra: dict, record: Path) -> Job:
    data = write_rows(tmp_path / "data" / "train.csv", [{"text": t, "label": y} for t, y in tiny.sentences(32)])
    encoder = tiny.build_encoder(tmp_path / "encoder")
    job = make_tree(tmp_path, {"model_name_or_path": str(encoder), **hyperparameters}, {"train": data.parent},
                    source=source, extra=extra)  # fmt: skip
    environ = toolkit_env(job.root) | {"SMP_STANDIN_RECORD": str(record)}
    environ["PYTHONPATH"] = os.pathsep.join(map(str, (STANDINS / "smp2", NETGUARD)))  # torch.sagemaker stand-in
    done = subprocess.run([str(TOOLKIT)], env=environ, capture_output=True, text=True, timeout=600)
    job.returncode, job.stdout, job.stderr = done.returncode, done.stdout, done.stderr
    return job


@pytest.mark.external
@pytest.mark.slow
def test_smp_v2_init_before_the_model_through_the_toolkit(tmp_path: Path, source: Path) -> None:
    """torchrun (torch_distributed, two processes), mp_parameters as SDK v2 sends them; the toolkit also renders
    them on argv as --mp_parameters hybrid_shard_degree=2."""
    record = tmp_path / "smp.jsonl"
    hps = {"max_steps": 2, "train_batch_size": 4, "use_cpu": True, "mp_parameters": V2, **FSDP}
    distributed = {"sagemaker_torch_distributed_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2}
    job = toolkit_job(tmp_path, source, hps, distributed, record)
    assert job.returncode == 0, job.log[-4000:]
    assert "torchrun --nnodes 1 --nproc_per_node 2" in job.log and "--mp_parameters" in job.log
    inits = [json.loads(line) for line in record.read_text().splitlines()]
    assert sorted(i["rank"] for i in inits) == ["0", "1"]
    for init in inits:  # each rank: in its process group, before any model existed, with the job's parameters
        assert init["process_group"] and init["models_before_init"] == 0 and init["config"] == V2
    assert (job.model_dir / "model.safetensors").is_file()


@pytest.mark.external
def test_smp_v1_through_the_toolkit_fails_naming_fsdp(tmp_path: Path, source: Path) -> None:
    record = tmp_path / "smp.jsonl"
    job = toolkit_job(tmp_path, source, {"max_steps": 2, "mp_parameters": V1}, {}, record)
    assert_fails(job, r"model parallel v1 settings \(microbatches, partitions\)")
    assert "deepspeed" in job.failure and not record.exists()


def test_every_failure_reason_fits_sagemakers_limit() -> None:
    reasons = [
        smdist.model_parallel_problem(V1, "torchrun", False, True, None),
        smdist.model_parallel_problem(V2, "torchrun", False, True, "ModuleNotFoundError: No module named 'torch.x'"),
        smdist.model_parallel_problem(V2, "mpi", True, True, None),
    ]
    assert all(reason and len(reason) < 900 for reason in reasons)
