"""Values the parser types correctly but the job would reject only deep inside a run, after the model loaded (or,
for push_to_hub, after training): checked right after parsing."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from transformers import TrainingArguments

from sm_train import lora
from sm_train.errors import ConfigError, require_at_least

# Ranges the libraries impose on a field, found by them only deep inside a run: (lowest, a bound below which the
# value must stay or None, why).
# NumPy seeds are 32-bit unsigned; DataLoader refuses negative workers; the rest make no sense outside them.
RANGES: dict[str, tuple[float, float | None, str]] = {
    "seed": (0, 2**32, "NumPy and torch take seeds from 0 to 2**32-1"),
    "data_seed": (0, 2**32, "NumPy and torch take seeds from 0 to 2**32-1"),
    "dataloader_num_workers": (0, None, "0 loads data in the training process"),
    "dataloader_prefetch_factor": (1, None, "batches loaded ahead by each worker"),
    "eval_accumulation_steps": (1, None, "evaluation steps before results move to the CPU"),
    "torch_empty_cache_steps": (1, None, "steps between emptying the device cache"),
    "num_train_epochs": (0, None, "passes over the training data"),
    "max_grad_norm": (0, None, "0 turns gradient clipping off"),
    "weight_decay": (0, None, "torch's optimizers refuse a negative decay"),
    "adam_epsilon": (0, None, "torch's optimizers refuse a negative epsilon"),
    "adam_beta1": (0, 1, "torch's Adam refuses betas outside [0, 1)"),
    "adam_beta2": (0, 1, "torch's Adam refuses betas outside [0, 1)"),
    "label_smoothing_factor": (0, 1, "the share of probability spread over other labels, below 1"),
    "early_stopping_threshold": (0, None, "how much the metric must improve"),
    "lora_r": (1, None, "the rank of LoRA's update matrices"),
    "lora_alpha": (1, None, "LoRA's update is scaled by lora_alpha / lora_r"),
    "lora_dropout": (0, 1, "a dropout probability, below 1"),
}


def _check_numbers(*dataclass_objects: Any) -> None:
    """Every number finite (json.loads and float() read "1e400" as infinity, and "nan" passes every comparison),
    and within the range the libraries impose, while its name can still be given."""
    for obj in dataclass_objects:
        for item in fields(obj):
            value = getattr(obj, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(
                    f"Hyperparameter '{item.name}' must be a finite number, got {value}; pass a plain number such as "
                    f"{item.default if isinstance(item.default, int | float) else 1}.",
                    key=item.name,
                )
            low, below, why = RANGES.get(item.name, (None, None, ""))
            number = isinstance(value, int | float) and not isinstance(value, bool) and low is not None
            if number and (value < low or (below is not None and value >= below)):
                span = f"at least {low}" + (f" and below {below}" if below is not None else "")
                raise ConfigError(f"Hyperparameter '{item.name}' must be {span} ({why}), got {value}.", key=item.name)


def validate(job: Any, task_args: Any, args: TrainingArguments, tracking: Mapping[str, str]) -> None:
    """Values HfArgumentParser types correctly but Trainer would only reject deep inside a run. `tracking`: the
    report_to integrations' variables the environment has (env.tracking)."""
    _check_numbers(job, task_args, args)
    require_at_least(
        1,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_train_samples=job.max_train_samples,
        max_eval_samples=job.max_eval_samples,
        num_proc=job.num_proc,
        early_stopping_patience=job.early_stopping_patience,
    )
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise ConfigError(
            f"Nothing to train: num_train_epochs={args.num_train_epochs} and max_steps={args.max_steps}; "
            "set num_train_epochs > 0 or max_steps > 0.",
            key="num_train_epochs",
        )
    if job.save_every_minutes is not None and job.save_every_minutes <= 0:
        raise ConfigError(
            f"Hyperparameter 'save_every_minutes' must be positive, got {job.save_every_minutes}.",
            key="save_every_minutes",
        )
    if job.early_stopping_patience and args.eval_strategy == "no":
        raise ConfigError(
            "early_stopping_patience needs evaluations during training, and eval_strategy (or save_strategy) is 'no'; "
            "use steps or epoch.",
            key="early_stopping_patience",
        )
    if job.sigterm_grace_seconds <= 0:
        raise ConfigError(
            f"Hyperparameter 'sigterm_grace_seconds' must be positive, got {job.sigterm_grace_seconds}.",
            key="sigterm_grace_seconds",
        )
    if args.learning_rate < 0:
        raise ConfigError(
            f"Hyperparameter 'learning_rate' must not be negative, got {args.learning_rate}.", key="learning_rate"
        )
    if args.save_total_limit is not None and args.save_total_limit < 0:
        raise ConfigError(
            f"Hyperparameter 'save_total_limit' must not be negative, got {args.save_total_limit}; "
            "0 keeps every checkpoint.",
            key="save_total_limit",
        )
    _check_report_to(args.report_to, tracking)
    lora.check(job, args)  # use_lora: peft installed and new enough, no sharded training
    if args.push_to_hub:
        _check_push_to_hub(args)


# report_to names whose availability check (transformers.integrations) or pip package is not named after them.
_INTEGRATIONS = {
    "azure_ml": ("is_azureml_available", "azureml-core"),
    "comet_ml": ("is_comet_available", "comet-ml"),
    "flyte": ("is_flytekit_available", "flytekit"),
}


def _check_report_to(report_to: Iterable[str] | None, tracking: Mapping[str, str]) -> None:
    """An integration whose package is missing fails when Trainer is built, after the model loaded; an MLflow server
    the job cannot use (SageMaker's managed MLflow without its plugin), once training is about to start."""
    from transformers.integrations import integration_utils

    from sm_train import mlflow_run

    supported = integration_utils.INTEGRATION_TO_CALLBACK
    for name in report_to or ():
        if name not in supported:
            raise ConfigError(
                f"report_to={name!r} is not an integration transformers knows; use none, all or one of: "
                f"{', '.join(supported)}."
            )
        check, package = _INTEGRATIONS.get(name, (f"is_{name}_available", name))
        available = getattr(integration_utils, check, None)  # the check the integration's callback makes
        if available is not None and not available():
            raise ConfigError(
                f"report_to={name} needs the {package} package, which is not installed: add {package} to "
                f"requirements.txt in source_dir (the job installs it before training), or leave {name} out of "
                "report_to."
            )
    if "mlflow" in (report_to or ()):
        mlflow_run.check_mlflow(tracking)


def _check_push_to_hub(args: TrainingArguments) -> None:
    """push_to_hub fails only when Trainer is built or, worse, at the final save: a whole run lost for a missing
    setting. Everything that can be known without the network is checked here."""
    import huggingface_hub
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise ConfigError(
            "push_to_hub=true, but the Hugging Face Hub is switched off in this job (HF_HUB_OFFLINE or "
            "TRANSFORMERS_OFFLINE is set): remove that environment variable, or set push_to_hub=false and "
            "publish the model from the model.tar.gz."
        )
    if not args.hub_model_id:
        # Without it transformers names the repository after output_dir, which sm_train points at the checkpoint
        # dir: every job would push to a repository called "checkpoints".
        raise ConfigError(
            "push_to_hub=true needs hub_model_id, the repository to push to (e.g. 'your-name/your-model')."
        )
    try:
        token = args.hub_token or huggingface_hub.get_token()
    except Exception:  # noqa: BLE001 - a token source that fails (OIDC exchange) is reported by the push itself
        return
    if not token:
        raise ConfigError(
            "push_to_hub=true needs a Hugging Face token with write access, and the job has none: set HF_TOKEN in "
            "the estimator's environment (hub_token works too, but the training toolkit prints hyperparameters in "
            "the job log), or set push_to_hub=false."
        )
