"""Job policy beside the parser: the values sm_train supplies below the user's (where checkpoints go, SageMaker
defaults, what the device calls for, early stopping's schedule). config.py applies them; it decides nothing here."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from sm_train import device, dist
from sm_train.dialects import is_true, is_unset
from sm_train.env import SageMakerEnv
from sm_train.tasks import Task

logger = logging.getLogger(__name__)


def checkpoint_root(env: SageMakerEnv, given: str | None) -> Path:
    """The checkpoint dir; with several hosts each writes under its own name, so that files of different hosts never
    overwrite each other in the one S3 prefix SageMaker syncs for all of them."""
    root = Path(given) if given else env.checkpoint_dir
    return root / env.current_host if len(env.hosts) > 1 else root


def sagemaker_defaults(
    env: SageMakerEnv, checkpoints: Path, hardware: device.DeviceInfo, given: Mapping[str, Any]
) -> dict[str, Any]:
    """Lowest-precedence values: checkpoints in the checkpoint dir, never in the model dir (notebooks PR#138); batches
    grouped by length; and what the device calls for (device.py). `hardware`: the device as its caller described it
    (use_cpu=true makes it a CPU); `given`: what the user set."""
    cpu_processes = {}
    processes = dist.topology(env).world_size
    if processes > 1 and not hardware.cuda and "use_cpu" not in given:
        # Without it transformers leaves each process training the whole data alone (parallel_mode not distributed).
        logger.info("%d processes and no GPU: data parallel over gloo on the CPU (use_cpu=true)", processes)
        cpu_processes = {"use_cpu": True}
    if is_true(given.get("use_cpu", False)):
        hardware = device.DeviceInfo()
    precision, said = device.precision(hardware, given)
    for line in said:
        logger.info(line)
    if not {"train_sampling_strategy", "group_by_length"} & set(given):
        logger.info("training batches grouped by length (set train_sampling_strategy=random to turn it off)")
    return {
        # Rows of similar length share a batch: little padding, several times faster on skewed data.
        "train_sampling_strategy": "group_by_length",  # transformers 5
        "group_by_length": True,  # transformers 4.x
        **device.dataloader_defaults(hardware, env.num_cpus, env.num_gpus),
        **precision,
        "output_dir": str(checkpoints),
        # Early-stopping patience and other callback state survive a spot restart (transformers#28544).
        "restore_callback_states_from_checkpoint": True,
        # With several hosts each keeps a whole checkpoint in its own folder (checkpoint_root) to resume from.
        "save_on_each_node": len(env.hosts) > 1,
        "save_total_limit": 2,
        "report_to": "none",
        # tqdm's carriage returns corrupt CloudWatch lines; keep bars only on a terminal.
        "disable_tqdm": not sys.stdout.isatty(),
        **cpu_processes,
    }


def early_stopping_defaults(values: dict[str, Any], task_cls: type[Task]) -> dict[str, Any]:
    """Early stopping judges evaluations and keeps the best model: evaluate whenever a checkpoint is saved (keeping
    the best model needs the two schedules to match), judged by the task's metric."""
    strategy = values.get("eval_strategy") or values.get("save_strategy")
    strategy = "steps" if strategy in (None, "best") else strategy
    steps = values.get("eval_steps") or values.get("save_steps") or TrainingArguments.save_steps
    return {
        "load_best_model_at_end": True,
        "eval_strategy": strategy,
        "save_strategy": strategy,
        "eval_steps": steps,
        "save_steps": steps,
        "metric_for_best_model": task_cls.best_metric or "loss",
    }


def tuning_defaults(objective: str | None, task_cls: type[Task], values: Mapping[str, Any], stopping: bool) -> dict:
    """A tuning trial (SageMaker's tuner names its objective in _tuning_objective_metric): when the objective is one
    of the task's evaluation metrics (eval_<name>, as the metric lines print it), the best model and early stopping
    judge by it, and the trial evaluates every epoch so the tuner (and its early stopping) reads the objective as
    training goes. Values the user set are kept; greater_is_better follows the metric (config.py)."""
    if not objective:
        return {}
    metric = objective.removeprefix("eval_")
    if objective == metric or metric not in ("loss", *task_cls.metric_names):
        logger.info(
            "tuning objective %s: not an evaluation metric of %s (eval_loss or eval_ with one of %s); the tuner reads "
            "it with its own metric definition",
            objective,
            task_cls.name,
            ", ".join(task_cls.metric_names),
        )
        return {}
    found: dict[str, Any] = {}
    if is_unset(values.get("metric_for_best_model")):
        found["metric_for_best_model"] = metric
    if not stopping and is_unset(values.get("eval_strategy")):
        found["eval_strategy"] = "epoch"
    if found:
        said = ", ".join(f"{key}={value}" for key, value in found.items())
        logger.info("tuning objective %s: %s (set them to choose otherwise)", objective, said)
    return found
