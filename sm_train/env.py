"""A frozen snapshot of the SageMaker training environment: SM_* variables and the /opt/ml files.

This module only reads. It never creates directories, starts processes or calls AWS. The root `/opt/ml` is
relocatable with SAGEMAKER_BASE_DIR exactly as the sagemaker-training toolkit does it, so every path follows. A
config file that is not what SageMaker writes (invalid JSON, a wrong type) is a ConfigError naming the file: a job
must never run on a guess (a `hosts` string read as a list of letters hangs the launch on DNS).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sm_train.errors import ConfigError

DEFAULT_ROOT = "/opt/ml"
# Keys the toolkit consumes itself (sagemaker_training/params.py); they never reach the user script as
# hyperparameters. Any other `sagemaker_*` key is a framework parameter (SM_FRAMEWORK_PARAMS).
RESERVED_KEYS = frozenset({"sagemaker_program", "sagemaker_submit_directory", "sagemaker_enable_cloudwatch_metrics",
                           "sagemaker_region", "sagemaker_container_log_level", "sagemaker_job_name",
                           "default_user_module_name", "_tuning_objective_metric", "sagemaker_s3_output"})  # fmt: skip


def is_reserved(key: str) -> bool:
    """True for keys SageMaker reserves for itself: never user hyperparameters."""
    return key in RESERVED_KEYS or key.startswith("sagemaker_")


def decode_value(value: Any) -> Any:
    """One hyperparameters.json value as the field it reaches will read it.

    SDK v2 json-encodes every value ('"bert"', '"3.10"', '3', 'true'), so a JSON string is decoded. Any other text
    ('3.10', 'true', '[1, 2]') is kept as given and typed by its field in config.py: SDK v3 and boto3 send raw
    strings, and json.loads before the field is known turned run_name '3.10' into 3.1 and '1e400' into infinity.
    """
    if isinstance(value, str) and value.startswith('"'):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        return decoded if isinstance(decoded, str) else value
    return value


def _json_or_text(value: Any) -> Any:
    """A framework parameter as the toolkit reads it (sagemaker_mpi_enabled 'true' -> True)."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return value


# What torchrun (and anything launching like it) sets for each process; Open MPI's OMPI_COMM_WORLD_* are kept too.
LAUNCHER_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
)
MPI_PREFIX = "OMPI_COMM_WORLD_"  # Open MPI's variables for each rank (mpirun)


def launcher_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The launcher's variables that are set: torchrun's (LAUNCHER_VARIABLES) and Open MPI's (OMPI_COMM_WORLD_*)."""
    return {k: v for k, v in environ.items() if k in LAUNCHER_VARIABLES or k.startswith(MPI_PREFIX)}


# What report_to=tensorboard and report_to=mlflow read (tracking.py): where event files go, the MLflow server,
# experiment, run and tags, and whether the model is logged as artifacts. Credentials are left to MLflow itself.
TRACKING_VARIABLES = ("TENSORBOARD_LOGGING_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME",
                      "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_NAME", "MLFLOW_RUN_ID", "MLFLOW_TAGS",
                      "HF_MLFLOW_LOG_ARTIFACTS")  # fmt: skip


def tracking_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The TRACKING_VARIABLES that are set and not empty."""
    return {name: environ[name] for name in TRACKING_VARIABLES if environ.get(name)}


@dataclass(frozen=True)
class SageMakerEnv:
    """Everything a training job learns from its surroundings, read once."""

    root: Path
    model_dir: Path
    output_dir: Path
    output_data_dir: Path
    input_config_dir: Path
    checkpoint_dir: Path
    # The user's hyperparameters, typed by json.loads, reserved keys removed; None when not inside SageMaker.
    hyperparameters: Mapping[str, Any] | None
    hyperparameters_source: str
    channels: Mapping[str, Path] = field(default_factory=dict)
    framework_params: Mapping[str, Any] = field(default_factory=dict)
    hosts: tuple[str, ...] = ("algo-1",)
    current_host: str = "algo-1"
    num_gpus: int = 0
    num_cpus: int = 1
    job_name: str | None = None
    local_rank: int = 0  # this process's rank on its host (torchrun's LOCAL_RANK); 0 without a launcher
    launcher: Mapping[str, str] = field(default_factory=dict)  # the LAUNCHER_VARIABLES that are set (dist.py)
    training_env: Mapping[str, Any] = field(default_factory=dict)
    resource_config: Mapping[str, Any] = field(default_factory=dict)
    input_data_config: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_config: Mapping[str, Any] | None = None
    # Script mode: the entry point SageMaker's toolkit runs (sagemaker_program in hyperparameters.json); None for an
    # image run as its own algorithm (bring your own container).
    program: str | None = None
    # A tuning trial: the objective metric SageMaker's tuner reads from the log (_tuning_objective_metric).
    tuning_objective: str | None = None
    # The report_to integrations' variables that are set (TRACKING_VARIABLES), read by tracking.py.
    tracking: Mapping[str, str] = field(default_factory=dict)

    @property
    def in_sagemaker(self) -> bool:
        return self.hyperparameters is not None

    @property
    def checkpoints_synced(self) -> bool:
        """SageMaker syncs the checkpoint dir with S3 only when the job has a CheckpointConfig."""
        return self.checkpoint_config is not None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"the key {twice[0]!r} appears twice (one value would silently replace the other)")
    return dict(pairs)


def _read_json(path: Path, kind: type = dict) -> Any:
    """A config file SageMaker writes (None when absent): JSON of the given top-level type, each key once."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except (ValueError, OSError) as e:
        raise ConfigError(f"{path} cannot be read as JSON ({e}); SageMaker writes this file, fix or remove it.") from e
    if not isinstance(data, kind):
        raise ConfigError(
            f"{path} must hold a JSON {'object' if kind is dict else kind.__name__}, got {_json_type(data)}."
        )
    return data


def _json_type(value: Any) -> str:
    names = ((bool, "a boolean"), (dict, "an object"), (list, "a list"), (str, "a string"), (int | float, "a number"))
    return next((name for kind, name in names if isinstance(value, kind)), "null")


def _json_var(environ: Mapping[str, str], name: str, default: Any, kind: type) -> Any:
    """A variable the toolkit sets to JSON of this type (its value is never quoted: SM_HPS may hold a token)."""
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError(f"The environment variable {name} is not valid JSON.") from None
    if not isinstance(value, kind):
        raise ConfigError(
            f"The environment variable {name} must hold a JSON {kind.__name__}, got {_json_type(value)}."
        )
    return value


def _hosts(hosts: Any, where: str) -> tuple[str, ...]:
    """The job's hosts: a non-empty list of host names (a string here would be read as one host per letter)."""
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError(f"'hosts' in {where} must be a non-empty list of host names, got {json.dumps(hosts)[:80]}.")
    return tuple(hosts)


def _int_var(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(environ.get(name, default))
    except ValueError:
        return default


def _hyperparameters(environ: Mapping[str, str], raw: Any, path: Path) -> tuple[dict[str, Any] | None, dict, str]:
    """User hyperparameters, framework params and where they came from.

    hyperparameters.json (`raw`, read from `path`) is the platform's own copy (every value a string); SM_HPS is the
    toolkit's decoded copy of the same file. argv is never a source here: toolkit 5.1.1 (in today's DLCs) passes it
    through /bin/sh.
    """
    if isinstance(raw, dict):
        user = {str(k): decode_value(v) for k, v in raw.items() if not is_reserved(str(k))}
        framework = {
            k: _json_or_text(v) for k, v in raw.items() if k.startswith("sagemaker_") and k not in RESERVED_KEYS
        }
        return user, framework, str(path)
    framework = _json_var(environ, "SM_FRAMEWORK_PARAMS", {}, dict)
    if "SM_HPS" in environ:
        hps = _json_var(environ, "SM_HPS", {}, dict)
        return {k: v for k, v in hps.items() if not is_reserved(k)}, framework, "SM_HPS"
    return None, framework, "argv"


def _reserved_value(raw: Any, key: str) -> str | None:
    """A key the toolkit consumes (sagemaker_program, _tuning_objective_metric), as text; None when absent."""
    value = decode_value(raw.get(key)) if isinstance(raw, dict) else None
    return str(value) if value else None


def _channels(environ: Mapping[str, str], root: Path, input_data_config: Mapping[str, Any]) -> dict[str, Path]:
    """Channel name -> directory: SM_CHANNELS/SM_CHANNEL_*, else inputdataconfig.json, else input/data/* dirs."""
    data_dir = root / "input" / "data"
    names = _json_var(environ, "SM_CHANNELS", None, list)
    if isinstance(names, list):
        return {n: Path(environ.get(f"SM_CHANNEL_{n.upper()}", data_dir / n)) for n in names}
    if input_data_config:
        return {n: data_dir / n for n in input_data_config}
    if data_dir.is_dir():
        return {p.name: p for p in sorted(data_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    return {}


def config_dir_of(environ: Mapping[str, str]) -> Path:
    """input/config: SageMaker's config files (SM_INPUT_CONFIG_DIR, else under the root)."""
    return Path(
        environ.get("SM_INPUT_CONFIG_DIR", Path(environ.get("SAGEMAKER_BASE_DIR", DEFAULT_ROOT)) / "input" / "config")
    )


def output_dir_of(environ: Mapping[str, str]) -> Path:
    """Where the failure file goes: known from the variables alone, even when a config file cannot be read."""
    return Path(environ.get("SM_OUTPUT_DIR", Path(environ.get("SAGEMAKER_BASE_DIR", DEFAULT_ROOT)) / "output"))


def from_environ(environ: Mapping[str, str] | None = None) -> SageMakerEnv:
    """Build the snapshot from `environ` (default: os.environ) and the files under the root. ConfigError when a
    config file is not what SageMaker writes."""
    environ = os.environ if environ is None else environ
    root = Path(environ.get("SAGEMAKER_BASE_DIR", DEFAULT_ROOT))
    config_dir = config_dir_of(environ)
    output_dir = output_dir_of(environ)
    resource_config = _read_json(config_dir / "resourceconfig.json") or {}
    input_data_config = _read_json(config_dir / "inputdataconfig.json") or {}
    checkpoint_config = _read_json(config_dir / "checkpointconfig.json")
    # There is no SM_CHECKPOINT_DIR by design (amazon-sagemaker-examples#836): LocalPath is the only source.
    local_path = (checkpoint_config or {}).get("LocalPath")
    if local_path is not None and not isinstance(local_path, str):
        raise ConfigError(f"'LocalPath' in {config_dir / 'checkpointconfig.json'} must be a path string.")
    checkpoint_dir = Path(local_path or root / "checkpoints")
    hyperparameters_file = config_dir / "hyperparameters.json"
    raw_hyperparameters = _read_json(hyperparameters_file)  # read once: the job's and the toolkit's keys
    hyperparameters, framework_params, source = _hyperparameters(environ, raw_hyperparameters, hyperparameters_file)
    training_env = _json_var(environ, "SM_TRAINING_ENV", {}, dict)
    sm_hosts = _json_var(environ, "SM_HOSTS", None, list)
    where = "SM_HOSTS" if sm_hosts else str(config_dir / "resourceconfig.json")
    hosts = _hosts(sm_hosts or resource_config.get("hosts", ["algo-1"]), where)
    current_host = environ.get("SM_CURRENT_HOST") or resource_config.get("current_host") or hosts[0]
    if current_host not in hosts:
        raise ConfigError(f"The current host {current_host!r} is not one of the job's hosts {list(hosts)} ({where}).")
    return SageMakerEnv(
        root=root,
        model_dir=Path(environ.get("SM_MODEL_DIR", root / "model")),
        output_dir=output_dir,
        output_data_dir=Path(environ.get("SM_OUTPUT_DATA_DIR", output_dir / "data")),
        input_config_dir=config_dir,
        checkpoint_dir=checkpoint_dir,
        hyperparameters=hyperparameters,
        hyperparameters_source=source,
        channels=_channels(environ, root, input_data_config),
        framework_params=framework_params,
        hosts=hosts,
        current_host=current_host,
        num_gpus=_int_var(environ, "SM_NUM_GPUS", 0),
        num_cpus=_int_var(environ, "SM_NUM_CPUS", os.cpu_count() or 1),
        job_name=environ.get("TRAINING_JOB_NAME") or training_env.get("job_name") or None,
        local_rank=_int_var(environ, "LOCAL_RANK", 0),
        launcher=launcher_variables(environ),
        training_env=training_env,
        resource_config=resource_config,
        input_data_config=input_data_config,
        checkpoint_config=checkpoint_config,
        program=_reserved_value(raw_hyperparameters, "sagemaker_program"),
        tuning_objective=_reserved_value(raw_hyperparameters, "_tuning_objective_metric"),
        tracking=tracking_variables(environ),
    )
