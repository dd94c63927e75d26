"""validate.py: values the parser types correctly but a run would reject only deep inside fail right after parsing."""

from pathlib import Path

import pytest

from sm_train.env import from_environ
from sm_train.errors import ConfigError


def test_nothing_to_train(parsed) -> None:
    with pytest.raises(ConfigError, match="Nothing to train"):
        parsed(num_train_epochs=0)


def test_a_negative_save_total_limit_is_refused(tmp_path: Path) -> None:
    from sm_train.config import parse
    from sm_train.device import DeviceInfo

    with pytest.raises(ConfigError, match="'save_total_limit' must not be negative, got -1; 0 keeps every"):
        parse([("save_total_limit", -1)], from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)}), DeviceInfo())


@pytest.mark.parametrize("value", ["1e400", "inf", "-inf", "nan", "NaN"])
@pytest.mark.parametrize(
    "name", ["learning_rate", "num_train_epochs", "max_grad_norm", "sigterm_grace_seconds", "save_every_minutes"]
)
def test_every_number_is_finite(parsed, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"'{name}' must be a finite number"):
        parsed(**{name: value})


def test_a_task_number_is_finite_too(parsed) -> None:
    with pytest.raises(ConfigError, match="'null_score_diff_threshold' must be a finite number"):
        parsed(task="question-answering", null_score_diff_threshold="nan")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("seed", "-1", "'seed' must be at least 0 and below 4294967296"),
        ("seed", str(2**32), "'seed' must be at least 0 and below 4294967296"),
        ("data_seed", "-5", "'data_seed' must be at least 0"),
        ("dataloader_num_workers", "-1", "'dataloader_num_workers' must be at least 0"),
        ("adam_beta2", "1.5", "'adam_beta2' must be at least 0 and below 1"),
        ("warmup_steps", "-3", "warmup_steps >= 0"),
    ],
)
def test_library_ranges_are_checked_at_parse_time(parsed, name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parsed(**{name: value})


def test_values_inside_the_ranges_pass(parsed) -> None:
    args = parsed(seed="0", data_seed=str(2**32 - 1), dataloader_num_workers="0", adam_beta2="0.999").training_args
    assert args.seed == 0 and args.data_seed == 2**32 - 1 and args.adam_beta2 == 0.999
