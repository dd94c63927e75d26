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

    with pytest.raises(ConfigError, match="'save_total_limit' must not be negative, got -1; 0 keeps every"):
        parse([("save_total_limit", -1)], from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)}))
