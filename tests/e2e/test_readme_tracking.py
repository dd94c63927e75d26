"""The README's tracking launches (the ```python tracking-v3 and ```python tracking-v2 blocks, after each SDK's own
blocks in one namespace) run as written with the pinned SDKs, offline: the TensorBoard launch asks SageMaker to upload
/opt/ml/output/tensorboard, where report_to=tensorboard writes, and the managed-MLflow launch gives the job its
tracking server and the plugin it needs; their hyperparameters parse to those integrations."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from sm_train.config import parse
from sm_train.device import DeviceInfo
from sm_train.env import from_environ
from tests.sdk import README, launch
from tests.sdk_run import ACCOUNT

pytestmark = pytest.mark.external  # the SDKs run in venvs of their own

BUCKET = f"sagemaker-us-east-1-{ACCOUNT}"
LOCAL = "/opt/ml/output/tensorboard"  # where report_to=tensorboard writes (sm_train/tracking.py)
LAUNCHES = 3  # each SDK's own launches, one per task, before the tracking blocks


def test_each_sdk_has_its_tracking_blocks() -> None:
    for tag, count in (("tracking-v3", 2), ("tracking-v2", 1)):
        blocks = re.findall(rf"^```python {tag}\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
        assert len(blocks) == count, f"{README}: {count} block(s) tagged ```python {tag}"


def reports_to(hyperparameters: dict[str, str], tmp_path: Path, decode: bool) -> list[str]:
    """What the job's report_to resolves to, parsed as the job parses it."""
    (tmp_path / "input" / "config").mkdir(parents=True, exist_ok=True)
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    items = [(k, json.loads(v) if decode else v) for k, v in hyperparameters.items() if not k.startswith("sagemaker_")]
    return parse(items, env, DeviceInfo()).training_args.report_to


def test_sdk_v3_tensorboard_and_managed_mlflow(tmp_path: Path) -> None:
    sdk = launch("sdk-v3+tracking-v3")
    tensorboard, managed = sdk.requests[LAUNCHES:]
    assert tensorboard["TensorBoardOutputConfig"] == {
        "S3OutputPath": f"s3://{BUCKET}/sm-train/tensorboard/reviews",
        "LocalPath": LOCAL,
    }
    assert reports_to(tensorboard["HyperParameters"], tmp_path, decode=False) == ["tensorboard"]
    environment = managed["Environment"]
    assert re.fullmatch(
        r"arn:aws:sagemaker:[\w-]+:\d{12}:mlflow-tracking-server/.+", environment["MLFLOW_TRACKING_URI"]
    )
    assert environment["MLFLOW_EXPERIMENT_NAME"] == "reviews"
    assert reports_to(managed["HyperParameters"], tmp_path, decode=False) == ["mlflow"]
    requirements = (sdk.channel(managed, "code") / "requirements.txt").read_text().split()
    assert {"mlflow", "sagemaker-mlflow"} <= set(requirements)  # installed before the job starts


def test_sdk_v2_tensorboard(tmp_path: Path) -> None:
    sdk = launch("sdk-v2+tracking-v2")
    (tensorboard,) = sdk.requests[LAUNCHES:]
    assert tensorboard["TensorBoardOutputConfig"] == {
        "S3OutputPath": f"s3://{BUCKET}/sm-train/tensorboard/reviews",
        "LocalPath": LOCAL,
    }
    assert reports_to(tensorboard["HyperParameters"], tmp_path, decode=True) == ["tensorboard"]
    with tarfile.open(sdk.uploaded(json.loads(tensorboard["HyperParameters"]["sagemaker_submit_directory"]))) as tar:
        assert "scripts/train.py" in tar.getnames()
