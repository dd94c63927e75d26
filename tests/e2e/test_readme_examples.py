"""Every launch in the README's "Run on SageMaker" (the ```python sdk-v3 and ```python sdk-v2 blocks) runs with the
pinned SDK, offline: the requests it builds are checked here, and their hyperparameters parse alike in both SDKs."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from sm_train.catalog import METRIC_NAMES
from sm_train.config import parse
from sm_train.env import from_environ
from sm_train.metrics import metric_definitions
from tests.sdk import README, launch

pytestmark = pytest.mark.external  # the SDKs run in venvs of their own

TASKS = ("text-classification", "question-answering", "summarization")  # the order of the README's examples
IMAGES = "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:"
V3_IMAGE, V2_IMAGE = IMAGES + "2.9.0-transformers5.3.0-gpu-py312", IMAGES + "2.8.0-transformers4.56.2-gpu-py312"


def task_of(hyperparameters: dict[str, str]) -> str:
    """The task of a request's hyperparameters (JSON-encoded by SDK v2, raw strings from SDK v3)."""
    return hyperparameters.get("task", "text-classification").strip('"')


def test_the_readme_launches_every_task_with_both_sdks() -> None:
    text = README.read_text()
    for tag in ("sdk-v3", "sdk-v2"):
        blocks = re.findall(rf"^```python {tag}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
        assert len(blocks) == 4, f"{README}: a setup block and one launch per task, tagged ```python {tag}"
    assert "5.13.1" not in text.split("## Run on SageMaker")[1].split("\n## ")[0]


def test_sdk_v3_requests() -> None:
    sdk = launch("sdk-v3")
    assert [task_of(r["HyperParameters"]) for r in sdk.requests] == list(TASKS)
    for request in sdk.requests:
        task = task_of(request["HyperParameters"])
        spec = request["AlgorithmSpecification"]
        assert spec["TrainingImage"].startswith(V3_IMAGE)
        assert spec["MetricDefinitions"] == metric_definitions(METRIC_NAMES[task])
        assert all(isinstance(v, str) for v in request["HyperParameters"].values())
        code, drivers = sdk.channel(request, "code"), sdk.channel(request, "sm_drivers")
        assert (code / "scripts" / "train.py").exists() and (code / "requirements.txt").exists()
        assert not (code / ".venv").exists()
        script = (drivers / "sm_train.sh").read_text()
        assert "install_requirements.py requirements.txt" in script
        assert json.loads((drivers / "sourcecode.json").read_text())["entry_script"] == "scripts/train.py"
        distributed = (drivers / "distributed.json").read_text()
        if task == "text-classification":
            assert request["EnableManagedSpotTraining"] is True
            assert request["CheckpointConfig"]["S3Uri"] == "s3://my-bucket/checkpoints/reviews/"
            assert request["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
            assert request["StoppingCondition"]["MaxWaitTimeInSeconds"] > request["StoppingCondition"][
                "MaxRuntimeInSeconds"
            ]  # fmt: skip
            assert "basic_script_driver.py" in script and distributed.strip() in ("", "{}", "null")
        else:
            assert "torchrun_driver.py" in script and "process_count_per_node" in distributed
    assert [r["ResourceConfig"]["InstanceCount"] for r in sdk.requests] == [1, 1, 2]


def test_sdk_v2_requests() -> None:
    sdk = launch("sdk-v2")
    assert [task_of(r["HyperParameters"]) for r in sdk.requests] == list(TASKS)
    for request in sdk.requests:
        hyperparameters = request["HyperParameters"]
        task = task_of(hyperparameters)
        assert request["AlgorithmSpecification"]["TrainingImage"].startswith(V2_IMAGE)
        assert request["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions(METRIC_NAMES[task])
        assert json.loads(hyperparameters["sagemaker_program"]) == "scripts/train.py"
        with tarfile.open(sdk.uploaded(json.loads(hyperparameters["sagemaker_submit_directory"]))) as tar:
            names = set(tar.getnames())
        assert {"scripts/train.py", "requirements.txt", "sm_train/cli.py"} <= names
        assert not any(name.startswith(".venv") for name in names)
        if task == "text-classification":
            assert request["EnableManagedSpotTraining"] is True
            assert request["CheckpointConfig"] == {"S3Uri": "s3://my-bucket/checkpoints/reviews/"}
        else:
            assert hyperparameters["sagemaker_torch_distributed_enabled"] == "true"


@pytest.mark.parametrize("index", range(len(TASKS)))
def test_both_sdks_hyperparameters_type_identically(tmp_path: Path, index: int) -> None:
    """The same dictionary, sent as JSON values by SDK v2 and as raw strings by SDK v3, gives the same job."""
    (tmp_path / "input" / "config").mkdir(parents=True)
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    v2 = launch("sdk-v2").requests[index]["HyperParameters"]
    v3 = launch("sdk-v3").requests[index]["HyperParameters"]
    from_v2 = parse([(k, json.loads(v)) for k, v in v2.items() if not k.startswith("sagemaker_")], env)
    from_v3 = parse(list(v3.items()), env)
    assert from_v2.job == from_v3.job and from_v2.task_args == from_v3.task_args
    assert from_v2.training_args.to_dict() == from_v3.training_args.to_dict()
    assert from_v3.training_args.fp16 is True and isinstance(from_v3.training_args.learning_rate, float)
