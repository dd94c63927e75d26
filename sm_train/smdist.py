"""SageMaker's own distributed libraries (smdistributed): what a job that asks for one gets, decided within seconds.

SMDDP (distribution smdistributed.dataparallel): the library must import, the instance type and the PyTorch version
must be ones it supports, and torch's launcher variables must be exported before TrainingArguments sets up the device
(accelerate initialises the `smddp` process group only when LOCAL_RANK is set, and needs RANK with it).
Model parallel (mp_parameters): SMP v1 settings fail naming FSDP and DeepSpeed; SMP v2 settings need torch.sagemaker,
torchrun and fsdp, and torch.sagemaker.init() runs before the model is built. Anything else fails at once, naming the
distribution that works instead.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from sm_train import dist
from sm_train.dialects import is_true
from sm_train.env import SageMakerEnv
from sm_train.errors import ConfigError

logger = logging.getLogger(__name__)

SMDDP_FLAG = "sagemaker_distributed_dataparallel_enabled"
SMDDP_MODULE = "smdistributed.dataparallel.torch.torch_smddp"
SMDDP_INSTANCE_TYPES = frozenset({"ml.p3.16xlarge", "ml.p3dn.24xlarge", "ml.p4d.24xlarge", "ml.p4de.24xlarge"})
SMDDP_LAST_TORCH = (2, 5)  # the last PyTorch Deep Learning Container that ships SMDDP (2.5.1)
SMP_MODULE = "torch.sagemaker"
# Settings only SageMaker model parallel v1 (smdistributed.modelparallel) reads; v2 shares tensor_parallel_degree and
# activation_loading_horizon with it, so those two alone mean v2.
SMP_V1_KEYS = frozenset(
    {
        "partitions", "pipeline_parallel_degree", "microbatches", "pipeline", "placement_strategy", "optimize",
        "ddp", "ddp_dist_backend", "ddp_port", "horovod", "memory_weight", "auto_partition", "default_partition",
        "contiguous", "active_microbatches", "sharded_data_parallel_degree", "prescaled_batch", "fp16", "bf16",
        "fp16_params", "shard_optimizer_state", "delayed_parameter_initialization", "offload_activations",
        "skip_tracing", "tensor_parallel_seed", "predefined_hooks", "load_partition",
    }
)  # fmt: skip
# SMP v2 parallelism that only torch.sagemaker.transform(model) applies, which sm_train does not call.
SMP_TRANSFORM_KEYS = ("tensor_parallel_degree", "context_parallel_degree", "expert_parallel_degree")
TORCH_DISTRIBUTED = 'distribution={"torch_distributed": {"enabled": True}}'
FSDP_ROUTE = (
    'Shard the model with PyTorch FSDP instead: hyperparameters {"fsdp": "full_shard auto_wrap", "fsdp_config": '
    '"{\\"transformer_layer_cls_to_wrap\\": [\\"BertLayer\\"]}"} (your model\'s layer class) with '
    f"{TORCH_DISTRIBUTED}, and remove mp_parameters"
)
DEEPSPEED_ROUTE = 'or DeepSpeed: {"deepspeed": "ds_config.json"} (a ZeRO config file in source_dir)'


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def _release(version: str) -> tuple[int, int]:
    """'2.5.1+cu124' -> (2, 5)."""
    parts = version.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def _import_problem(module: str) -> str | None:
    """None when `module` imports (importing smddp's registers its torch backend), else why not."""
    try:
        importlib.import_module(module)
    except (ImportError, OSError) as error:  # OSError: a compiled library built for another CUDA or PyTorch
        return f"{type(error).__name__}: {error}"
    return None


def data_parallel_requested(env: SageMakerEnv) -> bool:
    return is_true(env.framework_params.get(SMDDP_FLAG, False))


def instance_type(env: SageMakerEnv) -> str | None:
    """The instance type: the estimator's (framework parameter), else the resource config's or the toolkit's."""
    for source in (env.framework_params, env.resource_config, env.training_env):
        for key in ("sagemaker_instance_type", "current_instance_type"):
            if source.get(key):
                return str(source[key])
    return None


def data_parallel_problem(
    instance: str | None, torch_version: str, import_error: str | None, launcher: str
) -> str | None:
    """Why SMDDP cannot run here, or None. Pure: every input is given."""
    if import_error is not None:
        return (
            f"the SageMaker data parallel library does not import in this image ({import_error}); it ships only in "
            "the PyTorch 2.5 and older Deep Learning Containers"
        )
    if instance and instance.startswith("ml.") and instance not in SMDDP_INSTANCE_TYPES:
        return f"it does not support {instance} (only {', '.join(sorted(SMDDP_INSTANCE_TYPES))})"
    if _release(torch_version) > SMDDP_LAST_TORCH:
        last = ".".join(map(str, SMDDP_LAST_TORCH))
        return f"it supports PyTorch {last} and older, and this image has PyTorch {torch_version}"
    if launcher == "none":
        return "this process was not started by SageMaker's SMDataParallel launcher (mpirun), so it has no peers"
    return None


def data_parallel_environment(env: SageMakerEnv, torch_version: str | None = None) -> dict[str, str]:
    """The variables to export (setdefault) before the configuration is parsed when the job asks for SMDDP: torch's
    rank variables for an mpirun launch, and SMDATAPARALLEL_LOCAL_RANK, which Trainer reads to place the model.
    Empty when SMDDP is not asked for. ConfigError, naming torch_distributed, when it cannot run here."""
    if not data_parallel_requested(env):
        return {}
    topo = dist.topology(env)
    problem = data_parallel_problem(
        instance_type(env), torch_version or _torch_version(), _import_problem(SMDDP_MODULE), topo.launcher
    )
    if problem:
        raise ConfigError(
            f"The estimator enables SageMaker distributed data parallel (smdistributed dataparallel, {SMDDP_FLAG}), "
            f"but {problem}. Use {TORCH_DISTRIBUTED} instead: the same data parallel training over NCCL, on any GPU "
            "instance and PyTorch version."
        )
    variables = dist.torch_variables(topo)
    variables["SMDATAPARALLEL_LOCAL_RANK"] = str(topo.local_rank)
    logger.info("SageMaker distributed data parallel (smddp backend): rank %s of %s", topo.rank, topo.world_size)
    return variables


def parse_mp_parameters(value: str | None) -> dict[str, Any]:
    """mp_parameters as a dict, from the JSON text the parser makes of every form it arrives in (a dict, JSON, or the
    toolkit's k=v,k=v rendering: dialects.py); {} when unset."""
    if value is None or value.strip() in ("", "None", "null", "{}"):
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ConfigError(
            f"Hyperparameter 'mp_parameters': cannot read {value!r}; pass a JSON object such as "
            '{"hybrid_shard_degree": 2}.'
        )
    return parsed


def mp_parameters(cfg: Any) -> dict[str, Any]:
    """The job's mp_parameters (the hyperparameter arrives as JobArgs.smp_parameters)."""
    return parse_mp_parameters(getattr(cfg.job, "smp_parameters", None))


def model_parallel_problem(
    params: Mapping[str, Any], launcher: str, mpi: bool, fsdp: bool, import_error: str | None
) -> str | None:
    """Why mp_parameters cannot run here, or None (nothing asked, or SMP v2 ready to init). Pure."""
    if not params:
        return None
    v1 = sorted(SMP_V1_KEYS & set(params))
    if v1:
        return (
            f"mp_parameters has SageMaker model parallel v1 settings ({', '.join(v1)}): that library "
            "(smdistributed.modelparallel) is archived, ships in no current image, and transformers 5 removed its "
            f"Trainer support. {FSDP_ROUTE}; {DEEPSPEED_ROUTE}."
        )
    keys = ", ".join(sorted(params))
    if import_error is not None:
        return (
            f"mp_parameters has SageMaker model parallel v2 settings ({keys}), but torch.sagemaker does not import "
            f"in this image ({import_error}); it ships only in SageMaker's model parallel (SMP v2) images. SMP v2 "
            f'builds on PyTorch FSDP: {FSDP_ROUTE} (fsdp "hybrid_shard auto_wrap" shards within each host).'
        )
    if launcher == "mpi" or mpi:
        return (
            "SageMaker model parallel v2 (mp_parameters) runs under torchrun, and this job was launched with MPI: "
            'use the PyTorch estimator with distribution={"torch_distributed": {"enabled": True}, '
            '"smdistributed": {"modelparallel": {"enabled": True, "parameters": {...}}}} and no "mpi" key.'
        )
    transformed = [k for k in SMP_TRANSFORM_KEYS if _degree(params.get(k)) > 1]
    if transformed:
        return (
            f"mp_parameters sets {', '.join(transformed)} above 1, which needs torch.sagemaker.transform(model); "
            "sm_train applies SMP v2 through FSDP only (hybrid_shard_degree, sm_activation_offloading). Set them "
            "to 1 or remove them."
        )
    if not fsdp:
        return (
            "SageMaker model parallel v2 (mp_parameters) shards through PyTorch FSDP, and this job does not use "
            'FSDP: add the hyperparameters "fsdp": "full_shard auto_wrap" and "fsdp_config" (your model\'s layer '
            "class in transformer_layer_cls_to_wrap)."
        )
    return None


def _degree(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


def check(cfg: Any, env: SageMakerEnv) -> None:
    """Right after parsing, before any data or model loads: ConfigError when a requested smdistributed library
    cannot run this job (the message names the distribution that works)."""
    args = cfg.training_args
    if data_parallel_requested(env) and (getattr(args, "fsdp", None) or getattr(args, "deepspeed", None)):
        raise ConfigError(
            "SageMaker distributed data parallel (smdistributed dataparallel) replicates the model; it does not "
            f"combine with fsdp or deepspeed. For sharded training use {TORCH_DISTRIBUTED} with fsdp or deepspeed."
        )
    params = mp_parameters(cfg)
    if not params:
        return
    v1 = SMP_V1_KEYS & set(params)
    problem = model_parallel_problem(
        params,
        dist.topology(env).launcher,
        is_true(env.framework_params.get("sagemaker_mpi_enabled", False)),
        bool(getattr(args, "fsdp", None)),
        None if v1 else _import_problem(SMP_MODULE),
    )
    if problem:
        raise ConfigError(problem)


def init_model_parallel(cfg: Any) -> bool:
    """torch.sagemaker.init(mp_parameters) when the job has SMP v2 settings: after the process group is up (the
    device setup of the training arguments) and before the model is built. True when it ran."""
    params = mp_parameters(cfg)
    if not params or SMP_V1_KEYS & set(params):
        return False
    _ = cfg.training_args.device  # torchrun's process group, which SMP v2 builds its groups in
    tsm = importlib.import_module(SMP_MODULE)
    tsm.init(params)
    logger.info("SageMaker model parallel v2 initialised (torch.sagemaker.init): %s", json.dumps(params, default=str))
    return True
