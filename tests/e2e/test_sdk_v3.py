"""The job under SDK v3's own container drivers (sagemaker-train): the channels, hyperparameters and driver script
that the README's ModelTrainer launches upload (tests/sdk.py), laid out as the platform does, and the request's
container command run on them: sm_train.sh -> environment.py -> basic_script_driver.py or torchrun_driver.py ->
`python3 scripts/train.py --key value ...` in the code channel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_failures import sentiment
from tests.jobs import Job, assert_metric_lines_captured, job_env, write_rows
from tests.sdk import SDK_PYTHON, Launch, launch

pytestmark = pytest.mark.external  # jobs in other processes

TINY = {
    "text_column": "review",
    "label_column": "sentiment",
    "epochs": 3,
    "train_batch_size": 16,
    "learning_rate": 3e-3,
    "fp16": False,
    "logging_first_step": True,
    "label_names": ["labels"],
    "seed": 1,
}


def as_sdk_v3_sends(hyperparameters: dict[str, Any]) -> dict[str, str]:
    """The values as ModelTrainer sends them: its own safe_serialize, run in the SDK's venv."""
    code = "import json, sys; from sagemaker.train.utils import safe_serialize as s; "
    code += "print(json.dumps({k: s(v) for k, v in json.load(sys.stdin).items()}))"
    done = subprocess.run(
        [str(SDK_PYTHON["sdk-v3"]), "-c", code], input=json.dumps(hyperparameters), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def relocated(source: Path, target: Path, root: Path) -> None:
    """A channel the SDK uploaded, as the platform downloads it; the drivers' fixed /opt/ml paths point at root."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in target.rglob("*"):
        if path.suffix in (".py", ".sh", ".json"):
            path.write_text(path.read_text().replace("/opt/ml", str(root)))


def run_driver(base: Path, channels: dict[str, Path], request: dict[str, Any], hyperparameters: dict[str, Any]) -> Job:
    """The tree of one host, the `code` and `sm_drivers` channels as uploaded, and the request's container command."""
    root = base / "opt" / "ml"
    data, config = root / "input" / "data", root / "input" / "config"
    for name in ("model", "output/data", "input/config"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for name, uploaded in channels.items():
        relocated(uploaded, data / name, root)
    write_rows(data / "train" / "train.csv", sentiment(200))
    write_rows(data / "validation" / "validation.csv", sentiment(40, seed=7))
    names = ("train", "validation", *channels)
    (config / "inputdataconfig.json").write_text(json.dumps({c: {"TrainingInputMode": "File"} for c in names}))
    (config / "hyperparameters.json").write_text(json.dumps(as_sdk_v3_sends(hyperparameters)))
    resources = {"current_host": "algo-1", "hosts": ["algo-1"], "current_instance_type": "ml.c5.2xlarge"}
    (config / "resourceconfig.json").write_text(json.dumps(resources | {"network_interface_name": "lo"}))
    command = [a.replace("/opt/ml", str(root)) for a in request["AlgorithmSpecification"]["ContainerArguments"]]
    environment = job_env(root) | {
        "TRAINING_JOB_NAME": request["TrainingJobName"],
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",  # python3, pip and torchrun of the image
        "PIP_NO_INDEX": "1",  # requirements.txt is installed already: pip only checks it
    }
    done = subprocess.run(["/bin/bash", *command], env=environment, capture_output=True, text=True, timeout=900)
    return Job(root, done.returncode, done.stdout, done.stderr)


def uploaded(sdk: Launch, request: dict[str, Any]) -> dict[str, Path]:
    return {name: sdk.channel(request, name) for name in ("code", "sm_drivers")}


def check(job: Job) -> None:
    assert job.returncode == 0, job.stdout[-5000:] + job.stderr[-5000:]
    assert job.failure is None
    assert {"eval_accuracy", "train_loss"} <= set(job.results())  # learning is tested elsewhere (toolkit tests)
    assert (job.model_dir / "model.safetensors").exists()
    assert_metric_lines_captured(job.log, "text-classification")  # the definitions the README's requests carry
    resolved = json.loads((job.output_data_dir / "sm_train_config.json").read_text())
    training = resolved["training_args"]
    assert training["fp16"] is False and training["logging_first_step"] is True
    assert training["learning_rate"] == 3e-3 and training["num_train_epochs"] == 3
    assert training["label_names"] == ["labels"]


@pytest.fixture(scope="module")
def sdk() -> Launch:
    return launch("sdk-v3")


def test_basic_script_driver(tmp_path: Path, sdk: Launch, tiny_encoder: Path) -> None:
    """The README's spot classification job: ModelTrainer without `distributed`."""
    request = sdk.requests[0]
    job = run_driver(tmp_path, uploaded(sdk, request), request, TINY | {"model_name_or_path": str(tiny_encoder)})
    assert "Running Basic Script driver" in job.log
    check(job)


@pytest.mark.slow
def test_torchrun_driver_two_processes(tmp_path: Path, sdk: Launch, tiny_encoder: Path) -> None:
    """The README's question-answering launch (Torchrun()) with its driver channel as Torchrun(process_count_per_node
    =2) writes it: two CPU processes, one job (the batch per device halves, the global batch stays 16)."""
    request = sdk.requests[1]
    channels = uploaded(sdk, request)
    spec = json.loads((channels["sm_drivers"] / "distributed.json").read_text())
    assert "process_count_per_node" in spec
    channels["sm_drivers"] = shutil.copytree(channels["sm_drivers"], tmp_path / "sm_drivers")
    (channels["sm_drivers"] / "distributed.json").write_text(json.dumps(spec | {"process_count_per_node": 2}))
    hyperparameters = TINY | {"model_name_or_path": str(tiny_encoder), "train_batch_size": 8}
    job = run_driver(tmp_path / "job", channels, request, hyperparameters)
    assert "Running Torchrun Driver" in job.log and "--nproc_per_node=2" in job.log
    check(job)
