"""The README's deploy examples (the ```python deploy-v2 and deploy-v3 blocks of "Deploy") run as written with each
pinned SDK, offline (tests/deploy_run.py answers AWS in-process): every task gets an endpoint on its image line from
its job's model.tar.gz, found by the job's name, and is removed after; and the requests the examples send are
answered by code/inference.py, on tiny models of each task."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from sm_train.serving import inference
from tests.jobs import REPO
from tests.sdk import README, SDK_PYTHON
from tests.unit.test_serving import classifier, question_answering, summarization

pytestmark = pytest.mark.external  # the SDKs run in venvs of their own

INFERENCE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6.0-transformers"
IMAGES = {"deploy-v2": f"{INFERENCE}4.51.3-gpu-py312-cu124-ubuntu22.04",
          "deploy-v3": f"{INFERENCE}5.5.3-gpu-py312-cu124-ubuntu22.04"}  # fmt: skip
JOBS = {  # the README's job names, in its order, and their tasks
    "reviews-2025-01-31-12-00-00-000": "text-classification",
    "squad-2025-01-31-12-00-00-000": "question-answering",
    "dialogsum-2025-01-31-12-00-00-000": "summarization",
}


@functools.cache
def deployed(tag: str) -> list[dict[str, Any]]:
    """The AWS calls the README's ```python <tag> blocks made, run once per test session."""
    python = SDK_PYTHON[tag.replace("deploy", "sdk")]
    assert python.exists(), f"{python} is missing: `make install-sdk` (make test) installs the SDK venvs"
    base = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "AWS_", "PYTHON", "SAGEMAKER"))}
    done = subprocess.run(
        [str(python), str(REPO / "tests" / "deploy_run.py"), str(README), tag, str(base / "out")],
        cwd=base, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads((base / "out" / "calls.json").read_text())


def made(calls: list[dict[str, Any]], operation: str) -> list[dict[str, Any]]:
    return [call["params"] for call in calls if call["operation"] == operation]


@pytest.mark.parametrize("tag", ["deploy-v2", "deploy-v3"])
def test_each_job_gets_an_endpoint_on_its_image_line_and_it_is_removed(tag: str) -> None:
    calls = deployed(tag)
    assert {call["region"] for call in calls if call["region"] != "aws-global"} == {"us-east-1"}
    assert [job["TrainingJobName"] for job in made(calls, "DescribeTrainingJob")] == list(JOBS)
    containers = [model["PrimaryContainer"] for model in made(calls, "CreateModel")]
    assert [container["Image"] for container in containers] == [IMAGES[tag]] * 3
    assert [container["ModelDataUrl"] for container in containers] == [f"s3://bucket/{j}/output/model.tar.gz"
                                                                       for j in JOBS]  # fmt: skip
    # The toolkit imports the module named SAGEMAKER_PROGRAM from code/ (default inference.py; empty: none).
    assert all(container.get("Environment", {}).get("SAGEMAKER_PROGRAM", "inference.py") == "inference.py"
               for container in containers)  # fmt: skip
    assert "HF_TASK" not in json.dumps(containers)
    endpoints = made(calls, "CreateEndpoint")
    assert [endpoint["EndpointName"] for endpoint in endpoints] == list(JOBS)
    variants = [config["ProductionVariants"] for config in made(calls, "CreateEndpointConfig")]
    assert [variant["InstanceType"] for (variant,) in variants] == ["ml.g5.xlarge"] * 3
    assert [endpoint["EndpointName"] for endpoint in made(calls, "DeleteEndpoint")] == list(JOBS)
    assert len(made(calls, "DeleteModel")) == len(made(calls, "DeleteEndpointConfig")) == 3


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("readme-deploy")
    return {
        "text-classification": classifier(base / "classifier", ["negative", "positive"]),
        "question-answering": question_answering(base / "reader"),
        "summarization": summarization(base / "summarizer"),
    }


@pytest.mark.parametrize("tag", ["deploy-v2", "deploy-v3"])
def test_the_requests_are_answered_by_the_serving_module(tag: str, model_dirs: dict[str, Path]) -> None:
    answered = []
    for call in made(deployed(tag), "InvokeEndpoint"):
        task = JOBS[call["EndpointName"]]
        served = inference.model_fn(str(model_dirs[task]))
        data = inference.input_fn(call["Body"].encode(), call["ContentType"])
        answer = json.loads(inference.output_fn(inference.predict_fn(data, served), call["Accept"]))
        answered.append((task, data, answer))
    assert [task for task, _, _ in answered] == ["text-classification"] * 2 + ["question-answering", "summarization"]
    (_, texts, labels), (_, _, ranked), (_, _, span), (_, _, summaries) = answered
    assert len(labels) == len(texts["inputs"]) == 2 and all(set(label) == {"label", "score"} for label in labels)
    assert sorted(answer["label"] for answer in ranked) == ["negative", "positive"]
    assert set(span) == {"answer", "score", "start", "end"}
    assert len(summaries) == 1 and set(summaries[0]) == {"summary_text"}
