"""Where this process sits in a job: rank, local rank, world size, node rank and the master's address, read from the
launcher's variables (torchrun's, Open MPI's) or the SageMaker hosts, without initialising CUDA. And the launch
decisions made from it: the MPI variables torch needs, the torchrun relaunch of a job started without a distribution
flag on several GPUs or hosts, and the check that Trainer sees the world the launcher made."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sm_train.env import MPI_PREFIX, SageMakerEnv
from sm_train.errors import ConfigError

logger = logging.getLogger(__name__)

MASTER_PORT = 7777  # the port SageMaker's launchers use for the first host
_MPI = MPI_PREFIX


@dataclass(frozen=True)
class Topology:
    launcher: str  # "torchrun" (or anything that sets RANK/WORLD_SIZE), "mpi", or "none"
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0
    nodes: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = MASTER_PORT


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise ConfigError(f"The launcher set {name}={value!r}, which is not a number.") from None


def _master(environ: Mapping[str, str], env: SageMakerEnv) -> tuple[str, int]:
    """The first host runs rank 0; one host talks to itself over loopback."""
    default = env.hosts[0] if len(env.hosts) > 1 else "127.0.0.1"
    return environ.get("MASTER_ADDR") or default, _int(environ, "MASTER_PORT", MASTER_PORT)


def topology(env: SageMakerEnv) -> Topology:
    environ = env.launcher
    addr, port = _master(environ, env)
    if "WORLD_SIZE" in environ and "RANK" in environ:
        world, local_world = _int(environ, "WORLD_SIZE", 1), _int(environ, "LOCAL_WORLD_SIZE", 1)
        return Topology(
            "torchrun", _int(environ, "RANK", 0), _int(environ, "LOCAL_RANK", 0), world, local_world,
            _int(environ, "GROUP_RANK", 0), max(1, world // max(local_world, 1)), addr, port,
        )  # fmt: skip
    if _MPI + "SIZE" in environ:
        world = _int(environ, _MPI + "SIZE", 1)
        local_world = _int(environ, _MPI + "LOCAL_SIZE", world)
        return Topology(
            "mpi", _int(environ, _MPI + "RANK", 0), _int(environ, _MPI + "LOCAL_RANK", 0), world, local_world,
            _int(environ, _MPI + "NODE_RANK", 0), max(1, world // max(local_world, 1)), addr, port,
        )  # fmt: skip
    host = env.hosts.index(env.current_host) if env.current_host in env.hosts else 0
    return Topology("none", node_rank=host, nodes=len(env.hosts), master_addr=addr, master_port=port)


def torch_variables(topo: Topology) -> dict[str, str]:
    """The variables torch.distributed (env://) and accelerate read, for a launch that set only Open MPI's: without
    them every MPI rank trains alone."""
    if topo.launcher != "mpi":
        return {}
    return {
        "RANK": str(topo.rank),
        "WORLD_SIZE": str(topo.world_size),
        "LOCAL_RANK": str(topo.local_rank),
        "LOCAL_WORLD_SIZE": str(topo.local_world_size),
        "GROUP_RANK": str(topo.node_rank),
        "MASTER_ADDR": topo.master_addr,
        "MASTER_PORT": str(topo.master_port),
    }


def gpu_count(env: SageMakerEnv) -> int:
    """GPUs on this host: SageMaker's count, else torch's (which asks the driver; CUDA is not initialised)."""
    if env.num_gpus:
        return env.num_gpus
    import torch

    return torch.cuda.device_count()


def relaunch_command(
    topo: Topology, env: SageMakerEnv, gpus: int, argv: Sequence[str], entry: Sequence[str]
) -> list[str] | None:
    """torchrun for a job started as one process per host on several GPUs or hosts (no distribution flag): one
    process per GPU, all hosts in one job. None: run as launched. `entry`: how to start this program again."""
    if topo.launcher != "none" or (gpus <= 1 and topo.nodes <= 1):
        return None
    return [
        sys.executable, "-m", "torch.distributed.run",
        f"--nnodes={topo.nodes}", f"--nproc_per_node={max(gpus, 1)}", f"--node_rank={topo.node_rank}",
        f"--master_addr={topo.master_addr}", f"--master_port={topo.master_port}",
        *entry, *argv,
    ]  # fmt: skip


def entry_point(main_file: str | None = None) -> list[str]:
    """This program as torchrun starts it: the module when run as `python -m sm_train`, else the script."""
    path = Path(main_file or sys.argv[0]).resolve()
    if path.name == "__main__.py" and path.parent.name == "sm_train":
        return ["-m", "sm_train", "train"]
    return [str(path)]


def relaunch(command: list[str], environ: Mapping[str, str]) -> None:
    """Replace this process with torchrun (it forwards SIGTERM to the processes it starts)."""
    logger.info("relaunching under torchrun (auto_launch=false turns this off): %s", shlex.join(command))
    replace_process(command, with_package_on_path(environ))


def with_package_on_path(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment with sm_train's parent folder first on PYTHONPATH: `python -m sm_train` from any directory."""
    package_parent = str(Path(__file__).resolve().parent.parent)
    found = dict(environ)
    found["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, found.get("PYTHONPATH")) if p)
    return found


def replace_process(command: list[str], environ: Mapping[str, str]) -> None:
    """This process becomes `command` (exec): the signals sent to it reach that program."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, dict(environ))


def check_world(args: Any, topo: Topology) -> None:
    """Trainer must see the world the launcher made: otherwise each process trains the whole data alone, prints
    every metric and writes the model dir at the same time as the others."""
    if topo.world_size <= 1:
        return
    from transformers.training_args import ParallelMode

    distributed = (ParallelMode.DISTRIBUTED, ParallelMode.SAGEMAKER_DATA_PARALLEL)
    if args.world_size != topo.world_size or args.parallel_mode not in distributed:
        raise ConfigError(
            f"The launcher ({topo.launcher}) started {topo.world_size} processes, but Trainer sees "
            f"{args.world_size} ({args.parallel_mode.value}): each would train alone. On CPU instances set "
            "use_cpu=true (sm_train does when it sees no GPU); do not set ddp_backend without a GPU."
        )
