"""Check that a saved model directory deploys on the SageMaker Hugging Face inference toolkit.

Run with the inference venv (transformers 4.57 + sagemaker-huggingface-inference-toolkit 2.6.0), never with sm_train:

    .venv-tf4/bin/python tests/deploy_check.py MODEL_DIR '{"inputs": "a wonderful film"}'

The toolkit's ``HuggingFaceHandlerService`` is driven as the model server drives it: ``initialize(context)`` (which
looks for ``code/inference.py`` and calls ``load(model_dir)``), then ``preprocess`` with ``application/json``,
``predict`` and ``postprocess``. Without a third argument ``HF_TASK`` is unset, so the task is inferred from
``config.json``; a third argument sets ``HF_TASK`` as an endpoint's environment would. Prints one JSON
line ``{"task": ..., "prediction": ...}`` to stdout and exits 0; on failure prints the traceback to stderr, exits 1.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("HF_TASK", None)

import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from typing import Any  # noqa: E402

JSON = "application/json"


def run(model_dir: str, input_json: str) -> dict[str, Any]:
    """Load ``model_dir`` through the toolkit, run one JSON request and return the task and decoded response."""
    from mms.context import Context
    from sagemaker_huggingface_inference_toolkit.handler_service import HuggingFaceHandlerService

    context = Context("model", os.path.abspath(model_dir), {}, 1, 0, "1.1.11")
    service = HuggingFaceHandlerService()
    service.initialize(context)
    pipe = service.model
    data = service.preprocess(input_json, JSON, context)
    prediction = service.predict(data, pipe, context)
    body = service.postprocess(prediction, JSON, context)  # what the endpoint would send back
    return {"task": getattr(pipe, "task", None), "prediction": json.loads(body)}


def main(argv: list[str]) -> int:
    """Entry point: ``deploy_check.py MODEL_DIR INPUT_JSON [HF_TASK]`` (HF_TASK as set on an endpoint)."""
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    if len(argv) == 3:
        os.environ["HF_TASK"] = argv.pop()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = run(argv[0], argv[1])
    except Exception:
        traceback.print_exc(file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
