"""Run the README's launch code offline, inside a SageMaker SDK venv (.venv-sdk2 or .venv-sdk3), with every AWS call
answered here: the requests the SDK builds are written to OUT/calls.json and the files it uploads under OUT/s3/.

    .venv-sdk3/bin/python tests/sdk_run.py README.md sdk-v3 OUT   (run in a folder holding the clone the code names)

The code blocks tagged ```python <tag> run in order in one namespace, as cells of a notebook, with `role` and `bucket`
defined. Only the waiting for a job to finish is skipped; everything the SDK does before (image lookup, validation,
packing and uploading source_dir, the CreateTrainingJob request) runs as it would against AWS. Imports nothing of
sm_train or the test suite: this venv has only the SDK.
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
TRUST = {
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]
}
BLOCK = re.compile(r"^```python (sdk-v[23])\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(markdown: str, tag: str) -> list[str]:
    return [code for found, code in BLOCK.findall(markdown) if found == tag]


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
        calls.append({"operation": operation, "params": params})
        if operation == "GetCallerIdentity":
            return {"Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/test", "UserId": "test"}
        if operation == "GetRole":
            return {"Role": {"RoleName": params["RoleName"], "AssumeRolePolicyDocument": TRUST}}
        if operation == "SimulatePrincipalPolicy":
            return {"EvaluationResults": []}
        if operation == "CreateTrainingJob":
            created[params["TrainingJobName"]] = params
            return {"TrainingJobArn": _describe(params)["TrainingJobArn"]}
        if operation == "DescribeTrainingJob":
            return _describe(created[params["TrainingJobName"]])
        if operation == "ListBuckets":  # the SDK's default bucket exists
            bucket = {"Name": f"sagemaker-us-east-1-{ACCOUNT}", "CreationDate": datetime.datetime(2024, 1, 1)}
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


def main(readme: str, tag: str, out_dir: str) -> None:
    out = Path(out_dir)
    os.environ.update(
        AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
        SAGEMAKER_SUPPRESS_V2_WARNING="1",
    )  # fmt: skip
    calls = fake_aws(out)
    skip_waiting()
    cells = blocks(Path(readme).read_text(), tag)
    if not cells:
        raise SystemExit(f"no ```python {tag} blocks in {readme}")
    namespace: dict[str, Any] = {"role": f"arn:aws:iam::{ACCOUNT}:role/SageMaker", "bucket": "my-bucket"}
    for number, code in enumerate(cells, 1):
        exec(compile(code, f"<{tag} block {number}>", "exec"), namespace)
    (out / "calls.json").write_text(json.dumps(calls, default=str, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
