"""Check that a saved model directory deploys on the SageMaker Hugging Face inference toolkit.

Run with the inference venv (transformers 4.57 + sagemaker-huggingface-inference-toolkit 2.6.0), never with sm_train:

    .venv-tf4/bin/python tests/deploy_check.py [--pipeline] MODEL_DIR '{"inputs": "a wonderful film"}' [HF_TASK]
    .venv-tf4/bin/python tests/deploy_check.py --each MODEL_DIR '[{"inputs": ...}, {"inputs": ...}]'

The toolkit's ``HuggingFaceHandlerService`` is driven as the model server drives it: ``initialize(context)`` (which
imports the model dir's ``code/inference.py`` when there is one and loads the model through its ``model_fn``, else
builds the toolkit's pipeline), then ``handle`` for each request, a JSON body with the headers ``Content-Type`` and
``Accept: application/json`` (``handle`` runs ``input_fn``, ``predict_fn`` and ``output_fn``, or the toolkit's own
steps, and turns any exception into a ``PredictionException`` with status 400 and its message). ``--pipeline`` serves
the model dir without its ``code/`` (a copy of links to its other files): the toolkit's own pipeline. Without HF_TASK
the pipeline's task is inferred from ``config.json``; HF_TASK sets it as an endpoint's environment would.

Prints one JSON line to stdout and exits 0: ``{"task": ..., "prediction": ...}`` for one request (an error response
exits 1), or with ``--each`` ``{"task": ..., "module": ..., "responses": [{"status": ..., "body": ...}, ...]}``, each
body the decoded JSON answer or the error message, and ``module`` true when the toolkit serves through the model
dir's ``code/inference.py``. On failure prints the traceback to stderr and exits 1.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("HF_TASK", None)

import atexit  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

JSON = "application/json"


def without_code(model_dir: Path) -> Path:
    """A folder of links to the model dir's files but its code/: what the toolkit's pipeline path serves."""
    copy = Path(tempfile.mkdtemp(prefix="deploy-check-"))
    atexit.register(shutil.rmtree, copy, ignore_errors=True)
    for path in model_dir.iterdir():
        if path.name != "code":
            (copy / path.name).symlink_to(path.resolve())
    return copy


def serve(model_dir: str, bodies: list[str]) -> dict[str, Any]:
    """Load ``model_dir`` through the toolkit and send each JSON body as a request: the task and the responses."""
    from mms.context import Context, RequestProcessor
    from mms.metrics.metrics_store import MetricsStore
    from mms.service import PredictionException
    from sagemaker_huggingface_inference_toolkit.handler_service import HuggingFaceHandlerService

    context = Context("model", os.path.abspath(model_dir), {}, 1, 0, "1.1.11")
    service = HuggingFaceHandlerService()
    service.initialize(context)
    responses = []
    for number, body in enumerate(bodies):
        context.request_processor = [RequestProcessor({"Content-Type": JSON, "Accept": JSON})]
        context.metrics = MetricsStore({0: f"request-{number}"}, "model")
        try:
            (answer,) = service.handle([{"body": body.encode()}], context)
        except PredictionException as e:  # what the model server sends back: the status and the message
            responses.append({"status": e.error_code, "body": e.message})
            continue
        responses.append({"status": 200, "body": json.loads(answer)})
    module = "load" in vars(service)  # the toolkit replaced its own load with the module's model_fn
    return {"task": getattr(service.model, "task", None), "module": module, "responses": responses}


def main(argv: list[str]) -> int:
    """Entry point: ``deploy_check.py [--pipeline] [--each] MODEL_DIR INPUT_JSON [HF_TASK]``."""
    flags = {arg for arg in argv if arg in ("--pipeline", "--each")}
    argv = [arg for arg in argv if arg not in flags]
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    if len(argv) == 3:
        os.environ["HF_TASK"] = argv.pop()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    model_dir = str(without_code(Path(argv[0]))) if "--pipeline" in flags else argv[0]
    bodies = [json.dumps(request) for request in json.loads(argv[1])] if "--each" in flags else [argv[1]]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = serve(model_dir, bodies)
    except Exception:
        traceback.print_exc(file=sys.stderr)
        return 1
    if "--each" not in flags:
        (response,) = result.pop("responses")
        if response["status"] != 200:
            print(f"status {response['status']}: {response['body']}", file=sys.stderr)
            return 1
        result = {"task": result["task"], "prediction": response["body"]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
