"""Makes `import torch.sagemaker` find the stand-in beside this file, then runs the next sitecustomize on the path
(the tests' network guard), which this file shadows. For processes the tests start with this directory first on
PYTHONPATH; `torch` itself stays the installed one."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class _StandIn(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "torch.sagemaker":
            return None
        return importlib.util.spec_from_file_location(name, HERE / "torch_sagemaker.py")


sys.meta_path.insert(0, _StandIn())


def _chain() -> None:
    for entry in sys.path:
        candidate = Path(entry or ".").resolve() / "sitecustomize.py"
        if entry and candidate.is_file() and candidate.parent != HERE:
            spec = importlib.util.spec_from_file_location("_next_sitecustomize", candidate)
            if spec and spec.loader:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            return


_chain()
