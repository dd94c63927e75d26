"""collective.py: what the processes of a job agree on, and the process group left before the process exits."""

import socket

import torch.distributed as dist

from sm_train import collective


def test_the_process_group_is_left_when_the_job_is_done() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    assert dist.is_initialized()
    collective.leave_process_group()
    assert not dist.is_initialized()
    collective.leave_process_group()  # nothing to leave: a no-op
