"""Run the README's launch code offline, inside a SageMaker SDK venv (.venv-sdk2 or .venv-sdk3), with every AWS call
answered here: the calls the SDK makes are written to OUT/calls.json (each with its client's region) and the files it
uploads under OUT/s3/.

    .venv-sdk3/bin/python tests/sdk_run.py README.md sdk-v3 OUT   (run in a folder holding what the code names: the
                                                                   clone and the data folders it uploads)

The code blocks tagged ```python <tag> run as written, in order, in one fresh namespace, as cells of a notebook: they
define the session, region, role and bucket themselves. No region comes from the environment or an AWS config file,
so code that does not set one fails as it would on a machine without AWS configuration. Only AWS is faked: the caller
is a SageMaker execution role as in SageMaker Studio (STS, IAM), the SDK's default bucket exists, S3 keeps what is
uploaded. The waiting for a job to finish is skipped; everything the SDK does before (image lookup, validation,
uploads, packing source_dir, the CreateTrainingJob request) runs as it would against AWS. Imports nothing of sm_train
or the test suite: this venv has only the SDK.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
ROLE_NAME = "AmazonSageMaker-ExecutionRole-20240101T000000"  # as the SageMaker console names execution roles
CALLER = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE_NAME}/SageMaker"  # a Studio notebook's identity
ROLE = f"arn:aws:iam::{ACCOUNT}:role/service-role/{ROLE_NAME}"  # the role's ARN, with its path, as IAM answers
TRUST = {
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]
}
BLOCK = re.compile(r"^```python ([\w-]+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(markdown: str, tag: str) -> list[str]:
    """The ```python blocks with this tag, or with any of "tag+other" tags, in the README's order."""
    tags = set(tag.split("+"))
    return [code for found, code in BLOCK.findall(markdown) if found in tags]


def _describe(params: dict[str, Any]) -> dict[str, Any]:
    """A finished job, for the SDK's read-back after CreateTrainingJob."""
    name = params["TrainingJobName"]
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/{name}",
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "CreationTime": now,
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://bucket/{name}/output/model.tar.gz"},
    }


def _body(value: Any) -> bytes:
    if isinstance(value, bytes | str):
        return value.encode() if isinstance(value, str) else value
    return value.read()


def fake_aws(out: Path) -> list[dict[str, Any]]:
    """Answer every botocore call here; return the list the calls are recorded in."""
    import botocore.client

    calls: list[dict[str, Any]] = []
    created: dict[str, dict[str, Any]] = {}

    def call(self: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation in ("PutObject", "UploadPart") and "Body" in params:
            target = out / "s3" / params["Bucket"] / params["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_body(params.pop("Body")))
        region = self.meta.region_name
        calls.append({"operation": operation, "params": params, "region": region})
        if operation == "GetCallerIdentity":
            return {"Account": ACCOUNT, "Arn": CALLER, "UserId": f"AROA0000000000EXAMPLE:{ROLE_NAME}"}
        if operation == "GetRole":
            name = params["RoleName"]
            arn = ROLE if name == ROLE_NAME else f"arn:aws:iam::{ACCOUNT}:role/{name}"
            return {"Role": {"RoleName": name, "Arn": arn, "AssumeRolePolicyDocument": TRUST}}
        if operation == "SimulatePrincipalPolicy":
            return {"EvaluationResults": []}
        if operation == "CreateTrainingJob":
            created[params["TrainingJobName"]] = params
            return {"TrainingJobArn": _describe(params)["TrainingJobArn"]}
        if operation == "DescribeTrainingJob":
            return _describe(created[params["TrainingJobName"]])
        if operation == "CreateHyperParameterTuningJob":
            name = params["HyperParameterTuningJobName"]
            return {
                "HyperParameterTuningJobArn": f"arn:aws:sagemaker:{region}:{ACCOUNT}:hyper-parameter-tuning-job/{name}"
            }
        if operation == "DescribeHyperParameterTuningJob":  # what SDK v3 reads back after creating it
            return {
                "HyperParameterTuningJobName": params["HyperParameterTuningJobName"],
                "HyperParameterTuningJobStatus": "InProgress",
            }
        if operation == "ListBuckets":  # the SDK's default bucket in the session's region exists
            bucket = {"Name": f"sagemaker-{region}-{ACCOUNT}", "CreationDate": datetime.datetime(2024, 1, 1)}
            return {"Buckets": [bucket]}
        if operation == "ListObjectsV2":
            return {"KeyCount": 0, "Contents": []}
        if operation == "CreateMultipartUpload":
            return {"UploadId": "upload"}
        if operation == "UploadPart":
            return {"ETag": "etag"}
        return {}

    botocore.client.BaseClient._make_api_call = call
    return calls


def skip_waiting() -> None:
    """Return as soon as the job is created (wait=True would poll the job and stream its logs); no telemetry."""
    for name in ("sagemaker.telemetry.telemetry_logging", "sagemaker.core.telemetry.telemetry_logging"):
        try:  # both SDKs report calls to an S3 endpoint
            importlib.import_module(name)._requests_helper = lambda *args, **kwargs: None
        except ImportError:
            continue
    try:
        from sagemaker.core.resources import TrainingJob

        TrainingJob.wait = lambda self, *args, **kwargs: None
    except ImportError:  # SDK v2
        from sagemaker.session import Session

        Session.logs_for_job = lambda self, *args, **kwargs: None
        Session.wait_for_job = lambda self, *args, **kwargs: {}


def offline_aws_environment() -> None:
    """No region, profile or credentials from this machine: the README's code must say its region itself."""
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        os.environ.pop(name, None)  # the README's code says its region itself
    os.environ.update(
        AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true",
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", SAGEMAKER_SUPPRESS_V2_WARNING="1",
    )  # fmt: skip


def main(readme: str, tag: str, out_dir: str) -> None:
    out = Path(out_dir)
    offline_aws_environment()
    calls = fake_aws(out)
    skip_waiting()
    cells = blocks(Path(readme).read_text(), tag)
    if not cells:
        raise SystemExit(f"no ```python {tag} blocks in {readme}")
    namespace: dict[str, Any] = {"__name__": "__main__"}  # a notebook's: nothing defined beforehand
    for number, code in enumerate(cells, 1):
        exec(compile(code, f"<{tag} block {number}>", "exec"), namespace)
    (out / "calls.json").write_text(json.dumps(calls, default=str, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
