"""compat.py: aliases, and names transformers 5 renamed or removed, become what the installed transformers takes."""

import logging

import pytest

from sm_train.config import parse
from sm_train.device import DeviceInfo


@pytest.mark.parametrize(
    ("key", "value", "attribute", "expected"),
    [
        ("epochs", 3, "num_train_epochs", 3.0),
        ("train_batch_size", 4, "per_device_train_batch_size", 4),
        ("train-batch-size", 4, "per_device_train_batch_size", 4),
        ("eval_batch_size", 16, "per_device_eval_batch_size", 16),
        ("evaluation_strategy", "epoch", "eval_strategy", "epoch"),
        ("--Learning-Rate", 3e-5, "learning_rate", 3e-5),
        ("no_cuda", True, "use_cpu", True),
        ("per_gpu_train_batch_size", 2, "per_device_train_batch_size", 2),
    ],
)
def test_aliases_and_renames(env, key, value, attribute, expected, caplog) -> None:
    caplog.set_level(logging.INFO)
    args = parse([("model_name_or_path", "m"), (key, value)], env, DeviceInfo()).training_args
    actual = getattr(args, attribute)
    assert (actual.value if hasattr(actual, "value") else actual) == expected
    if not key.startswith("--"):
        assert f"became {attribute}" in caplog.text or "train-batch-size" in key


def test_model_name_alias(env) -> None:
    assert parse([("model_name", "bert")], env, DeviceInfo()).job.model_name_or_path == "bert"


def test_transformers_5_removals_are_translated(parsed, caplog) -> None:
    caplog.set_level(logging.INFO)
    cfg = parsed(
        warmup_ratio=0.1,
        group_by_length=True,
        overwrite_output_dir=True,
        save_safetensors=True,
    )
    args = cfg.training_args
    assert args.warmup_steps == 0.1
    assert args.train_sampling_strategy == "group_by_length"
    for dropped in ("overwrite_output_dir", "save_safetensors"):
        assert f"hyperparameter {dropped} dropped" in caplog.text


def test_logging_dir_is_where_tensorboard_writes(parsed) -> None:
    """One name on every transformers version: 4.x's own logging_dir field (5 has none) never receives it."""
    cfg = parsed(logging_dir="/tb")
    assert cfg.job.tensorboard_dir == "/tb"
    assert getattr(cfg.training_args, "logging_dir", None) != "/tb"


def test_model_parallel_parameters_reach_the_job(parsed) -> None:
    """mp_parameters (a field transformers 4.x ignores and 5 removed) reaches the job as smp_parameters, on both."""
    assert parsed(mp_parameters={"partitions": 2}).job.smp_parameters == '{"partitions": 2}'
    assert parsed(mp_parameters="partitions=2,ddp=True").job.smp_parameters == '{"partitions": 2, "ddp": true}'


def test_group_by_length_false_is_dropped(parsed) -> None:
    assert parsed(group_by_length=False).training_args.train_sampling_strategy == "random"
