"""sm_train/dist.py: the topology read from each launcher's variables, the MPI variables torch needs, the torchrun
relaunch of a job started without a distribution flag, and the check that Trainer sees the launcher's world."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from transformers.training_args import ParallelMode

from sm_train import dist
from sm_train.env import from_environ
from sm_train.errors import ConfigError


def environment(tmp_path, hosts=("algo-1",), current="algo-1", **variables):
    import json

    config = tmp_path / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "resourceconfig.json").write_text(json.dumps({"hosts": list(hosts), "current_host": current}))
    return from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path), **{k: str(v) for k, v in variables.items()}})


def test_torchrun_variables(tmp_path) -> None:
    env = environment(
        tmp_path, RANK=5, LOCAL_RANK=1, WORLD_SIZE=8, LOCAL_WORLD_SIZE=4, GROUP_RANK=1, MASTER_ADDR="algo-1"
    )
    assert dist.topology(env) == dist.Topology("torchrun", 5, 1, 8, 4, 1, 2, "algo-1", dist.MASTER_PORT)
    assert dist.torch_variables(dist.topology(env)) == {}  # torchrun already set them


def test_mpi_variables_become_torch_variables(tmp_path) -> None:
    env = environment(
        tmp_path,
        hosts=("algo-1", "algo-2"),
        current="algo-2",
        OMPI_COMM_WORLD_RANK=3,
        OMPI_COMM_WORLD_SIZE=4,
        OMPI_COMM_WORLD_LOCAL_RANK=1,
        OMPI_COMM_WORLD_LOCAL_SIZE=2,
        OMPI_COMM_WORLD_NODE_RANK=1,
    )
    topo = dist.topology(env)
    assert (topo.launcher, topo.rank, topo.world_size, topo.nodes, topo.master_addr) == ("mpi", 3, 4, 2, "algo-1")
    assert dist.torch_variables(topo) == {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "GROUP_RANK": "1",
        "MASTER_ADDR": "algo-1",
        "MASTER_PORT": "7777",
    }
    one_host = environment(tmp_path, OMPI_COMM_WORLD_RANK=1, OMPI_COMM_WORLD_SIZE=2)
    assert dist.torch_variables(dist.topology(one_host))["MASTER_ADDR"] == "127.0.0.1"


def test_no_launcher(tmp_path) -> None:
    env = environment(tmp_path, hosts=("algo-1", "algo-2", "algo-3"), current="algo-3")
    assert dist.topology(env) == dist.Topology("none", node_rank=2, nodes=3, master_addr="algo-1")


def test_a_bad_launcher_value_is_named(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"WORLD_SIZE='two'"):
        dist.topology(environment(tmp_path, RANK=0, WORLD_SIZE="two"))


@pytest.mark.parametrize(
    ("hosts", "current", "gpus", "expected"),
    [
        (("algo-1",), "algo-1", 0, None),
        (("algo-1",), "algo-1", 1, None),
        (("algo-1",), "algo-1", 8, ["--nnodes=1", "--nproc_per_node=8", "--node_rank=0", "--master_addr=127.0.0.1"]),
        (
            ("algo-1", "algo-2"),
            "algo-2",
            4,
            ["--nnodes=2", "--nproc_per_node=4", "--node_rank=1", "--master_addr=algo-1"],
        ),
        (
            ("algo-1", "algo-2"),
            "algo-1",
            0,
            ["--nnodes=2", "--nproc_per_node=1", "--node_rank=0", "--master_addr=algo-1"],
        ),
    ],
)
def test_several_gpus_or_hosts_relaunch_under_torchrun(tmp_path, hosts, current, gpus, expected) -> None:
    env = environment(tmp_path, hosts=hosts, current=current)
    command = dist.relaunch_command(dist.topology(env), env, gpus, ["--epochs", "1"], ["/code/scripts/train.py"])
    if expected is None:
        assert command is None
        return
    assert command == [
        sys.executable, "-m", "torch.distributed.run", *expected, "--master_port=7777",
        "/code/scripts/train.py", "--epochs", "1",
    ]  # fmt: skip


def test_a_launched_job_is_never_relaunched(tmp_path) -> None:
    env = environment(tmp_path, RANK=0, WORLD_SIZE=8, LOCAL_WORLD_SIZE=8)
    assert dist.relaunch_command(dist.topology(env), env, 8, [], ["train.py"]) is None


def test_entry_point(tmp_path) -> None:
    main = tmp_path / "sm_train" / "__main__.py"
    assert dist.entry_point(str(main)) == ["-m", "sm_train", "train"]
    assert dist.entry_point(str(tmp_path / "scripts" / "train.py")) == [str(tmp_path / "scripts" / "train.py")]


@pytest.mark.parametrize(
    ("world_size", "mode", "fails"),
    [
        (2, ParallelMode.DISTRIBUTED, False),
        (1, ParallelMode.NOT_PARALLEL, True),  # no use_cpu on CPU: every rank alone
        (2, ParallelMode.NOT_PARALLEL, True),  # ddp_backend=gloo without a GPU: sharded data, no gradient sync
        (2, ParallelMode.SAGEMAKER_DATA_PARALLEL, False),
    ],
)
def test_trainer_must_see_the_launchers_world(world_size, mode, fails) -> None:
    topo = dist.Topology("torchrun", world_size=2, local_world_size=2)
    args = SimpleNamespace(world_size=world_size, parallel_mode=mode)
    if fails:
        with pytest.raises(ConfigError, match="started 2 processes, but Trainer sees .* each would train alone"):
            dist.check_world(args, topo)
    else:
        dist.check_world(args, topo)
    dist.check_world(SimpleNamespace(world_size=1, parallel_mode=ParallelMode.NOT_PARALLEL), dist.Topology("none"))
