"""What the processes of a distributed job must agree on: when to save and stop, that a checkpoint is written
everywhere, and which checkpoint to resume from. Each is a no-op in a single process."""

from __future__ import annotations

import torch
import torch.distributed as dist


def distributed() -> bool:
    """Whether there are other processes to agree with (false in one process: every function here is then a no-op)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def leave_process_group() -> None:
    """Destroy torch.distributed's process group once the job is done (every process calls it): left to the
    interpreter's exit, gloo's threads can be torn down under a process of a finished job, which then aborts
    ("terminate called without an active exception", exit -6) and its launcher stops the others."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def largest(values: list[float], device: torch.device) -> list[float]:
    """Each value's maximum over all processes: the same numbers, bit for bit, on every process (one collective and
    one device sync for all of them)."""
    if not distributed():
        return values
    value = torch.tensor(values, dtype=torch.float32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value.tolist()


def wait_for_all() -> None:
    if distributed():
        dist.barrier()


def common_steps(steps: list[int]) -> list[int]:
    """The checkpoint steps complete on every process (each host keeps its own checkpoints)."""
    if not distributed():
        return steps
    everyone: list[list[int] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, steps)
    return sorted(set.intersection(*(set(s or ()) for s in everyone)))
