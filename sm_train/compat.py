"""Hyperparameter names across transformers 4.46+ and 5.x, and the aliases the seed notebooks use: one table.

A rule applies only when its old name is not a field of the installed TrainingArguments, so the same job works on a
4.x Deep Learning Container and on transformers 5 (where overwrite_output_dir, warmup_ratio, ... raise TypeError).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sm_train.dialects import is_true
from sm_train.redact import show

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    new: str | None  # None: the argument no longer exists and is dropped
    why: str
    # Maps the old value to the new one; returning None drops the pair.
    convert: Callable[[Any], Any] | None = None


def _if_true(new_value: Any) -> Callable[[Any], Any]:
    return lambda value: new_value if is_true(value) else None


def _warmup_ratio_on_4x(value: Any) -> Any:
    # transformers 5 takes a ratio as a float < 1 in warmup_steps; 4.x has an int warmup_steps and a warmup_ratio.
    return value if 0 < float(value) < 1 else None


RULES: dict[str, Rule] = {
    # Aliases from the seed notebooks and common spellings (dashes were already made underscores).
    "epochs": Rule("num_train_epochs", "alias"),
    "num_epochs": Rule("num_train_epochs", "alias"),
    "train_batch_size": Rule("per_device_train_batch_size", "alias"),
    "eval_batch_size": Rule("per_device_eval_batch_size", "alias"),
    "lr": Rule("learning_rate", "alias"),
    "model_name": Rule("model_name_or_path", "alias"),
    "model_id": Rule("model_name_or_path", "alias"),
    "evaluation_strategy": Rule("eval_strategy", "renamed in transformers 4.41"),
    # Removed or renamed in transformers 5.
    "warmup_ratio": Rule("warmup_steps", "transformers 5 takes a ratio as a float < 1 in warmup_steps"),
    "group_by_length": Rule(
        "train_sampling_strategy",
        "transformers 5 renamed it",
        lambda value: "group_by_length" if is_true(value) else "random",  # false must override sm_train's default
    ),
    "no_cuda": Rule("use_cpu", "renamed in transformers 5"),
    "per_gpu_train_batch_size": Rule("per_device_train_batch_size", "renamed"),
    "per_gpu_eval_batch_size": Rule("per_device_eval_batch_size", "renamed"),
    "include_inputs_for_metrics": Rule("include_for_metrics", "renamed", _if_true(["inputs"])),
    "adafactor": Rule("optim", "transformers 5 removed it", _if_true("adafactor")),
    "torchdynamo": Rule("torch_compile_backend", "renamed"),
    "push_to_hub_token": Rule("hub_token", "renamed"),
    "push_to_hub_model_id": Rule("hub_model_id", "renamed"),
    "overwrite_output_dir": Rule(
        None, "sm_train resumes from the checkpoint dir instead; see the resume hyperparameter"
    ),
    "save_safetensors": Rule(None, "removed in transformers 5; weights are always saved as safetensors"),
    "fp16_backend": Rule(None, "removed in transformers 5"),
    "half_precision_backend": Rule(None, "removed in transformers 5"),
    "fp16_opt_level": Rule(None, "removed in transformers 5 (apex)"),
    "include_tokens_per_second": Rule(None, "removed in transformers 5"),
    "use_mps_device": Rule(None, "removed in transformers 5; the device is chosen automatically"),
    "tpu_num_cores": Rule(None, "removed in transformers 5"),
    "tpu_metrics_debug": Rule(None, "removed in transformers 5"),
    "past_index": Rule(None, "removed in transformers 5"),
    "ray_scope": Rule(None, "removed in transformers 5"),
    "jit_mode_eval": Rule(None, "removed in transformers 5"),
    "use_legacy_prediction_loop": Rule(None, "removed in transformers 5"),
    "fsdp_min_num_params": Rule(None, "removed in transformers 5; set it in fsdp_config"),
    "fsdp_transformer_layer_cls_to_wrap": Rule(None, "removed in transformers 5; set it in fsdp_config"),
    # The reverse direction, for jobs written for transformers 5 running on a 4.x container.
    "train_sampling_strategy": Rule(
        "group_by_length",
        "transformers 4.x spells it group_by_length",
        lambda v: v == "group_by_length",
    ),
    "enable_jit_checkpoint": Rule(None, "not available in transformers 4.x"),
    "use_cache": Rule(None, "not available in transformers 4.x"),
}
# warmup_steps < 1 means a ratio only in transformers 5.
VALUE_RULES: dict[str, Rule] = {
    "warmup_steps": Rule("warmup_ratio", "a ratio on transformers 4.x", _warmup_ratio_on_4x)
}


# Renamed whatever the installed TrainingArguments has: transformers 4.x keeps an mp_parameters field it ignores.
ALWAYS: dict[str, Rule] = {
    "mp_parameters": Rule("smp_parameters", "the estimator's model-parallel parameters, read by sm_train"),
    # transformers 5 removed logging_dir; one name on both majors for where report_to=tensorboard writes.
    "logging_dir": Rule("tensorboard_dir", "where report_to=tensorboard writes (transformers 5 removed logging_dir)"),
}


def translate(key: str, value: Any, fields: Collection[str]) -> tuple[str, Any] | None:
    """(key, value) as the installed transformers spells it; None when the argument is dropped.

    Keys that are neither fields nor in the table come back unchanged; the caller reports them as unknown.
    """
    if key in ALWAYS:
        return ALWAYS[key].new, value  # type: ignore[return-value]
    if key in fields:
        rule = VALUE_RULES.get(key)
        if rule and rule.new in fields and rule.convert and rule.convert(value) is not None:
            logger.info(
                "hyperparameter %s=%s became %s=%s (%s)", key, show(key, value), rule.new, show(key, value), rule.why
            )
            return rule.new, value  # type: ignore[return-value]
        return key, value
    rule = RULES.get(key)
    if rule is None:
        return key, value
    if rule.new is None:
        logger.warning("hyperparameter %s dropped: %s", key, rule.why)
        return None
    if rule.new not in fields:
        return key, value
    new_value = rule.convert(value) if rule.convert else value
    if new_value is None:
        logger.warning("hyperparameter %s=%s dropped: %s", key, show(key, value), rule.why)
        return None
    logger.info(
        "hyperparameter %s=%s became %s=%s (%s)", key, show(key, value), rule.new, show(rule.new, new_value), rule.why
    )
    return rule.new, new_value
