"""Stand-in for smdistributed.dataparallel.torch.torch_smddp: importing it registers a torch.distributed backend
named 'smddp', as the real module does. Here it is gloo underneath, so it runs on CPU. `CREATED` records the world
each process group was made for, and the launcher variables the process had then."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch.distributed as dist

CREATED: list[dict[str, Any]] = []
VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SMDATAPARALLEL_LOCAL_RANK")


def _create(store: Any, rank: int, size: int, timeout: timedelta) -> Any:
    CREATED.append({"rank": rank, "size": size, **{k: os.environ.get(k) for k in VARIABLES}})
    return dist.ProcessGroupGloo(store, rank, size, timeout)


if "smddp" not in dist.Backend.backend_list:
    dist.Backend.register_backend("smddp", _create, devices=["cpu"])
