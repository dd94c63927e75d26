"""For the FSDP tests on CPU only: accelerate 1.x turns FSDP on for GPU (and other accelerator) processes alone and
silently trains CPU processes with DDP. Here an FSDP plugin on CPU processes (gloo) is kept, so Trainer runs its FSDP
code paths (FSDP2 wrapping, sharded saves, sharded resume) as on GPUs. The network guard is installed too."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path
from typing import Any

_GUARD = Path(__file__).parent.parent / "netguard" / "sitecustomize.py"
_spec = importlib.util.spec_from_file_location("_sm_train_netguard", _GUARD)
_spec.loader.exec_module(importlib.util.module_from_spec(_spec))  # installs itself on import


def _keep_fsdp_on_cpu() -> None:
    from accelerate import state
    from accelerate.utils import DistributedType

    original = state.AcceleratorState.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        plugin = kwargs.get("fsdp_plugin")
        if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = plugin

    state.AcceleratorState.__init__ = __init__


class _BeforeTrainer(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name == "transformers.trainer":
            sys.meta_path.remove(self)
            _keep_fsdp_on_cpu()


sys.meta_path.insert(0, _BeforeTrainer())
