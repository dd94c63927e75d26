"""Test stand-in for SageMaker model parallel v2 (`torch.sagemaker`). Never shipped.

`sys.modules["torch.sagemaker"]` is this module: in-process tests put it there themselves; processes the tests start
get it from sitecustomize.py beside this file (on PYTHONPATH). init() records what the real library depends on: the
configuration it was given, whether torch's process group was up, and whether any model had been built before it.
With SMP_STANDIN_RECORD set, each record is also appended to that file as a JSON line.
"""

from __future__ import annotations

import gc
import json
import os
from typing import Any

INITS: list[dict[str, Any]] = []


def _models_alive() -> int:
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return 0
    return sum(1 for o in gc.get_objects() if issubclass(type(o), PreTrainedModel))


def init(config: Any = None) -> None:
    import torch.distributed as dist

    record = {
        "config": config,
        "process_group": dist.is_available() and dist.is_initialized(),
        "models_before_init": _models_alive(),
        "rank": os.environ.get("RANK"),
    }
    INITS.append(record)
    path = os.environ.get("SMP_STANDIN_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")
