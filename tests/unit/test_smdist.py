"""sm_train/smdist.py: every decision about SageMaker's distributed libraries (SMDDP, SMP v1, SMP v2), as pure
functions; the SMDDP import check with the test stand-in (tests/standins/smddp); mp_parameters in every dialect it
arrives in; torch.sagemaker.init() with the SMP v2 stand-in (tests/standins/smp2)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sm_train import smdist
from sm_train.config import parse
from sm_train.device import DeviceInfo
from sm_train.dialects import argv_items
from sm_train.env import SageMakerEnv, from_environ
from sm_train.errors import ConfigError

STANDINS = Path(__file__).resolve().parent.parent / "standins"
SMDDP = {"sagemaker_distributed_dataparallel_enabled": True, "sagemaker_instance_type": "ml.p4d.24xlarge"}
MPI_RANK_1 = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
              "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}  # fmt: skip
TORCHRUN_RANK_1 = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}


def sm_env(framework: dict[str, Any] | None = None, **launcher: str) -> SageMakerEnv:
    environ = {"SM_FRAMEWORK_PARAMS": json.dumps(framework or {}), "SM_HOSTS": '["algo-1"]', **launcher}
    return from_environ({"SAGEMAKER_BASE_DIR": "/nonexistent", **environ})


@pytest.fixture
def smddp_standin(monkeypatch: pytest.MonkeyPatch) -> None:
    """smdistributed.dataparallel.torch.torch_smddp importable (registers a gloo-backed 'smddp' backend)."""
    monkeypatch.syspath_prepend(str(STANDINS / "smddp"))
    for name in [n for n in sys.modules if n.startswith("smdistributed")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.fixture
def no_smdistributed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smdistributed", None)  # import raises ImportError


@pytest.fixture
def smp2(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The torch.sagemaker stand-in, fresh."""
    spec = importlib.util.spec_from_file_location("torch.sagemaker", STANDINS / "smp2" / "torch_sagemaker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "torch.sagemaker", module)
    return module


# --- SMDDP -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), ("true", True), ("True", True), (False, False), ("false", False)]
)
def test_smddp_requested_by_the_framework_parameter(value: Any, expected: bool) -> None:
    assert smdist.data_parallel_requested(sm_env({smdist.SMDDP_FLAG: value})) is expected
    assert smdist.data_parallel_requested(sm_env({})) is False


def test_instance_type_from_the_estimator_then_the_resource_config(tmp_path: Path) -> None:
    assert smdist.instance_type(sm_env({"sagemaker_instance_type": "ml.p4d.24xlarge"})) == "ml.p4d.24xlarge"
    (tmp_path / "input" / "config").mkdir(parents=True)
    (tmp_path / "input" / "config" / "resourceconfig.json").write_text('{"current_instance_type": "ml.p5.48xlarge"}')
    assert smdist.instance_type(from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})) == "ml.p5.48xlarge"
    assert smdist.instance_type(sm_env({})) is None


@pytest.mark.parametrize(
    ("instance", "torch", "error", "launcher", "says"),
    [
        ("ml.p4d.24xlarge", "2.5.1+cu124", "ModuleNotFoundError: No module named 'smdistributed'", "mpi",
         "does not import in this image (ModuleNotFoundError"),
        ("ml.p5.48xlarge", "2.5.1", None, "mpi", "does not support ml.p5.48xlarge (only ml.p3.16xlarge"),
        ("ml.g5.12xlarge", "2.5.1", None, "mpi", "does not support ml.g5.12xlarge"),
        ("ml.p4de.24xlarge", "2.6.0", None, "mpi", "supports PyTorch 2.5 and older, and this image has PyTorch 2.6.0"),
        ("ml.p4d.24xlarge", "2.13.0+cpu", None, "mpi", "PyTorch 2.13.0+cpu"),
        ("ml.p4d.24xlarge", "2.5.1", None, "none", "not started by SageMaker's SMDataParallel launcher"),
    ],
)  # fmt: skip
def test_smddp_problems(instance: str, torch: str, error: str | None, launcher: str, says: str) -> None:
    assert says in smdist.data_parallel_problem(instance, torch, error, launcher)


@pytest.mark.parametrize("instance", [*sorted(smdist.SMDDP_INSTANCE_TYPES), None, "local_gpu"])
@pytest.mark.parametrize("torch", ["1.13.1", "2.0.1", "2.5.1+cu124"])
@pytest.mark.parametrize("launcher", ["mpi", "torchrun"])
def test_smddp_runs_where_it_is_supported(instance: str | None, torch: str, launcher: str) -> None:
    assert smdist.data_parallel_problem(instance, torch, None, launcher) is None


def test_no_smddp_no_variables() -> None:
    assert smdist.data_parallel_environment(sm_env({}, **MPI_RANK_1), torch_version="2.13.0") == {}


def test_smddp_missing_fails_naming_torch_distributed(no_smdistributed: None) -> None:
    with pytest.raises(ConfigError) as caught:
        smdist.data_parallel_environment(sm_env(SMDDP, **MPI_RANK_1), torch_version="2.5.1")
    message = str(caught.value)
    assert "smdistributed dataparallel" in message and "does not import" in message
    assert 'distribution={"torch_distributed": {"enabled": True}}' in message and "NCCL" in message
    assert len(message) <= 1024


def test_smddp_on_an_mpi_launch_exports_every_rank_variable_before_parsing(smddp_standin: None) -> None:
    variables = smdist.data_parallel_environment(sm_env(SMDDP, **MPI_RANK_1), torch_version="2.5.1")
    assert variables == {
        "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "0",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "7777", "SMDATAPARALLEL_LOCAL_RANK": "1",
    }  # fmt: skip
    import torch.distributed as dist

    assert "smddp" in dist.Backend.backend_list  # the import check registered the backend, as the library does


def test_smddp_under_torchrun_adds_only_the_local_rank_trainer_reads(smddp_standin: None) -> None:
    variables = smdist.data_parallel_environment(sm_env(SMDDP, **TORCHRUN_RANK_1), torch_version="2.5.1")
    assert variables == {"SMDATAPARALLEL_LOCAL_RANK": "1"}


def test_smddp_on_a_newer_pytorch_fails_even_when_it_imports(smddp_standin: None) -> None:
    with pytest.raises(ConfigError, match=r"PyTorch 2.5 and older, and this image has PyTorch 2.13"):
        smdist.data_parallel_environment(sm_env(SMDDP, **MPI_RANK_1), torch_version="2.13.0+cpu")


def test_smddp_without_a_launcher_fails(smddp_standin: None) -> None:
    with pytest.raises(ConfigError, match="not started by SageMaker's SMDataParallel launcher"):
        smdist.data_parallel_environment(sm_env(SMDDP), torch_version="2.5.1")


# --- mp_parameters: every dialect --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, {}),
        ("", {}),
        ("{}", {}),
        ({"hybrid_shard_degree": 2}, {"hybrid_shard_degree": 2}),
        ('{"hybrid_shard_degree": 2, "sm_activation_offloading": true}',
         {"hybrid_shard_degree": 2, "sm_activation_offloading": True}),
        ("partitions=2,microbatches=4", {"partitions": 2, "microbatches": 4}),
        ("pipeline=interleaved,ddp=True", {"pipeline": "interleaved", "ddp": True}),
    ],
)  # fmt: skip
def test_mp_parameters_read_in_every_dialect(env: SageMakerEnv, value: Any, expected: dict) -> None:
    """Each form, as the parser hands it on (dialects.py reads the toolkit's k=v rendering)."""
    cfg = parse([("model_name_or_path", "m"), ("mp_parameters", value)], env, DeviceInfo())
    assert smdist.mp_parameters(cfg) == expected


def test_unreadable_mp_parameters() -> None:
    with pytest.raises(ConfigError, match="'mp_parameters': cannot read 'partitions'"):
        smdist.parse_mp_parameters("partitions")


def _from_argv(env: SageMakerEnv, argv: list[str]) -> dict:
    return smdist.mp_parameters(parse([("model_name_or_path", "m"), *argv_items(argv)], env, DeviceInfo()))


def test_mp_parameters_from_the_toolkit_argv(env: SageMakerEnv) -> None:
    argv = ["--mp_parameters", "partitions=2,microbatches=4", "--epochs", "1"]
    assert _from_argv(env, argv) == {"partitions": 2, "microbatches": 4}


def test_mp_parameters_from_sm_hps_and_the_hyperparameters_file(tmp_path: Path) -> None:
    """SDK v3 sends the dict as JSON text in SM_HPS; SDK v2 json-encodes it in hyperparameters.json."""
    hps = {"model_name_or_path": "m", "mp_parameters": '{"hybrid_shard_degree": 2}'}
    from_hps = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path), "SM_HPS": json.dumps(hps)})
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    encoded = {"model_name_or_path": '"m"', "mp_parameters": json.dumps({"hybrid_shard_degree": 2})}
    (config / "hyperparameters.json").write_text(json.dumps(encoded))
    from_file = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    for environment in (from_hps, from_file):
        cfg = parse(list(environment.hyperparameters.items()), environment, DeviceInfo())
        assert smdist.mp_parameters(cfg) == {"hybrid_shard_degree": 2}


# --- model parallel decisions ------------------------------------------------------------------------------------

V2 = {"hybrid_shard_degree": 2, "sm_activation_offloading": True}


def problem(params: dict, launcher: str = "torchrun", mpi: bool = False, fsdp: bool = True,
            error: str | None = None) -> str | None:  # fmt: skip
    return smdist.model_parallel_problem(params, launcher, mpi, fsdp, error)


def test_smp_v1_fails_naming_fsdp_and_deepspeed() -> None:
    message = problem({"partitions": 2, "microbatches": 4, "ddp": True})
    assert "model parallel v1 settings (ddp, microbatches, partitions)" in message
    assert '"fsdp": "full_shard auto_wrap"' in message and "fsdp_config" in message and '"deepspeed"' in message
    assert '{"torch_distributed": {"enabled": True}}' in message and len(message) <= 1024


def test_smp_v1_wins_over_keys_both_versions_have() -> None:
    assert "v1 settings (pipeline_parallel_degree)" in problem({"pipeline_parallel_degree": 2,
                                                                "tensor_parallel_degree": 2})  # fmt: skip


def test_smp_v2_without_the_library_fails_naming_fsdp() -> None:
    message = problem(V2, error="ModuleNotFoundError: No module named 'torch.sagemaker'")
    assert "v2 settings (hybrid_shard_degree, sm_activation_offloading)" in message
    assert "torch.sagemaker does not import" in message and '"fsdp": "full_shard auto_wrap"' in message
    assert "hybrid_shard auto_wrap" in message and len(message) <= 1024


@pytest.mark.parametrize(("launcher", "mpi"), [("mpi", False), ("torchrun", True)])
def test_smp_v2_needs_torchrun(launcher: str, mpi: bool) -> None:
    assert '"torch_distributed": {"enabled": True}, "smdistributed"' in problem(V2, launcher, mpi)


@pytest.mark.parametrize("key", smdist.SMP_TRANSFORM_KEYS)
def test_smp_v2_parallelism_that_needs_transform_fails(key: str) -> None:
    assert f"sets {key} above 1" in problem({key: 2})
    assert problem({key: 1}) is None


def test_smp_v2_needs_fsdp() -> None:
    assert "does not use FSDP" in problem(V2, fsdp=False)


def test_smp_v2_ready_and_nothing_asked() -> None:
    assert problem(V2) is None
    assert problem({}, launcher="none", fsdp=False, error="missing") is None
    assert problem(V2, launcher="none") is None  # one process, or a torchrun relaunch still to come


# --- check and init_model_parallel -------------------------------------------------------------------------------


def job(mp: str | None = None, fsdp: Any = (), deepspeed: Any = None) -> Any:
    """The parts of a Config smdist reads; smp_parameters as the parser hands it on (JSON text)."""
    args = SimpleNamespace(fsdp=list(fsdp), deepspeed=deepspeed, device="cpu")
    return SimpleNamespace(job=SimpleNamespace(smp_parameters=mp), training_args=args)


def test_check_passes_a_job_without_smdistributed() -> None:
    smdist.check(job(), sm_env({}))


def test_check_smddp_does_not_combine_with_sharding() -> None:
    for cfg in (job(fsdp=["full_shard"]), job(deepspeed="ds.json")):
        with pytest.raises(ConfigError, match="does not combine with fsdp or deepspeed"):
            smdist.check(cfg, sm_env(SMDDP, **MPI_RANK_1))


def test_check_smp_v1(smp2: Any) -> None:
    with pytest.raises(ConfigError, match="model parallel v1"):
        smdist.check(job('{"partitions": 2}'), sm_env({"sagemaker_mpi_enabled": True}, **MPI_RANK_1))


def test_check_smp_v2_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.sagemaker", None)
    with pytest.raises(ConfigError, match=r"torch.sagemaker does not import in this image \(ModuleNotFoundError"):
        smdist.check(job(json.dumps(V2), fsdp=["full_shard"]), sm_env({}, **TORCHRUN_RANK_1))


def test_check_smp_v2_with_the_library(smp2: Any) -> None:
    smdist.check(job(json.dumps(V2), fsdp=["full_shard"]), sm_env({}, **TORCHRUN_RANK_1))
    with pytest.raises(ConfigError, match="launched with MPI"):
        smdist.check(job(json.dumps(V2), fsdp=["full_shard"]), sm_env({}, **MPI_RANK_1))
    assert smp2.INITS == []  # checking never initialises


def test_init_model_parallel_passes_the_parameters(smp2: Any) -> None:
    assert smdist.init_model_parallel(job(json.dumps(V2), fsdp=["full_shard"])) is True
    assert [record["config"] for record in smp2.INITS] == [V2]


@pytest.mark.parametrize("mp", [None, "", '{"partitions": 2}'])
def test_init_model_parallel_does_nothing_otherwise(smp2: Any, mp: Any) -> None:
    assert smdist.init_model_parallel(job(mp)) is False and smp2.INITS == []


def test_mp_parameters_never_reach_transformers_4_field(env: SageMakerEnv) -> None:
    """transformers 4.x TrainingArguments has an mp_parameters field of its own (a str it ignores): the value goes to
    JobArgs.smp_parameters on every version, and a dict is never handed to that str field."""
    cfg = parse([("model_name_or_path", "m"), ("mp_parameters", {"hybrid_shard_degree": 2})], env, DeviceInfo())
    assert cfg.job.smp_parameters and not getattr(cfg.training_args, "mp_parameters", "")
