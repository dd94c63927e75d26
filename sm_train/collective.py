"""What the processes of a distributed job must agree on: when to save and stop, that a checkpoint is written
everywhere, and which checkpoint to resume from. Each is a no-op in a single process."""

from __future__ import annotations

import torch
import torch.distributed as dist


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def any_process(flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag true on every process when it is true on any (one collective for all of them)."""
    if not _distributed():
        return flags
    value = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return [bool(v) for v in value.tolist()]


def wait_for_all() -> None:
    if _distributed():
        dist.barrier()


def common_steps(steps: list[int]) -> list[int]:
    """The checkpoint steps complete on every process (each host keeps its own checkpoints)."""
    if not _distributed():
        return steps
    everyone: list[list[int] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, steps)
    return sorted(set.intersection(*(set(s or ()) for s in everyone)))
