"""Run the README's deploy code offline, inside a SageMaker SDK venv (.venv-sdk2 or .venv-sdk3), as tests/sdk_run.py
runs its launch code: the calls the SDK makes go to OUT/calls.json.

    .venv-sdk3/bin/python tests/deploy_run.py README.md deploy-v3 OUT

The blocks tagged ```python <tag> run as written, in order, in one fresh namespace. AWS is answered as sdk_run.py
answers it (no region but the code's own, a Studio execution role, the default bucket), plus what deploying needs: any
training job is a finished one (its model.tar.gz at s3://bucket/<job>/output/model.tar.gz), a model, endpoint
configuration or endpoint exists once created and the endpoint is in service at once, and InvokeEndpoint answers
`[]` (the test answers the recorded requests with code/inference.py). Imports nothing of sm_train or the test suite
but sdk_run.py: this venv has only the SDK.
"""

from __future__ import annotations

import datetime
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import sdk_run  # noqa: E402

BLOCK = re.compile(r"^```python (deploy-v[23])\n(.*?)^```", re.MULTILINE | re.DOTALL)
ARN = f"arn:aws:sagemaker:us-east-1:{sdk_run.ACCOUNT}"
KINDS = {"Model": "model", "EndpointConfig": "endpoint-config", "Endpoint": "endpoint"}  # as ARNs spell them


def _resource(operation: str, params: dict[str, Any], created: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The answer to an endpoint call, or None for the calls sdk_run answers."""
    now = datetime.datetime.now(datetime.timezone.utc)
    kind = re.fullmatch(r"(Create|Describe|Delete)(Model|EndpointConfig|Endpoint)", operation)
    if operation == "DescribeTrainingJob":
        return sdk_run._describe(params)
    if operation == "InvokeEndpoint":
        from botocore.response import StreamingBody

        return {"Body": StreamingBody(io.BytesIO(b"[]"), 2), "ContentType": "application/json"}
    if kind is None:
        return None
    verb, noun = kind.groups()
    name = params[f"{noun}Name"]
    arn = {f"{noun}Arn": f"{ARN}:{KINDS[noun]}/{name}"}
    if verb == "Create":
        created[f"{noun}/{name}"] = params
        return arn
    if verb == "Delete":
        created.pop(f"{noun}/{name}", None)
        return {}
    found = {**created[f"{noun}/{name}"], **arn, "CreationTime": now}
    if noun == "Endpoint":
        found |= {"EndpointStatus": "InService", "LastModifiedTime": now}
    if noun == "Model":
        found.setdefault("ExecutionRoleArn", sdk_run.ROLE)
    return found


def fake_deploys(calls: list[dict[str, Any]]) -> None:
    """Answer the endpoint calls here, every other one as sdk_run does; record them all in `calls`."""
    import botocore.client

    answer_others = botocore.client.BaseClient._make_api_call
    created: dict[str, dict[str, Any]] = {}

    def call(self: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        found = _resource(operation, params, created)
        if found is None:
            return answer_others(self, operation, params)
        recorded = {k: v.decode() if isinstance(v, bytes) else v for k, v in params.items()}
        calls.append({"operation": operation, "params": recorded, "region": self.meta.region_name})
        return found

    botocore.client.BaseClient._make_api_call = call


def main(readme: str, tag: str, out_dir: str) -> None:
    out = Path(out_dir)
    sdk_run.offline_aws_environment()
    calls = sdk_run.fake_aws(out)
    fake_deploys(calls)
    sdk_run.skip_waiting()
    try:  # SDK v2 polls every 30 s, sleeping first; the endpoint here is in service at once
        from sagemaker.session import Session

        Session.wait_for_endpoint = lambda self, endpoint, *args, **kwargs: self.describe_endpoint(endpoint)
    except ImportError:  # SDK v3
        pass
    cells = [code for found, code in BLOCK.findall(Path(readme).read_text()) if found == tag]
    if not cells:
        raise SystemExit(f"no ```python {tag} blocks in {readme}")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for number, code in enumerate(cells, 1):
        exec(compile(code, f"<{tag} block {number}>", "exec"), namespace)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calls.json").write_text(json.dumps(calls, default=str, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
