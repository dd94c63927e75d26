"""Fixtures shared by the unit tests: a SageMaker environment on a temporary /opt/ml and the parser run in it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sm_train.config import Config, parse
from sm_train.device import DeviceInfo
from sm_train.env import SageMakerEnv, from_environ


@pytest.fixture
def env(tmp_path: Path) -> SageMakerEnv:
    """An environment on tmp_path as /opt/ml, with an empty input/config (no hyperparameters file)."""
    (tmp_path / "input" / "config").mkdir(parents=True)
    return from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})


@pytest.fixture
def parsed(env: SageMakerEnv) -> Callable[..., Config]:
    """parsed(name=value, ...): the Config of a job with model_name_or_path=m and these hyperparameters, in env, on
    a CPU (tests/unit/test_device.py describes GPUs)."""

    def parse_values(**values: Any) -> Config:
        return parse([("model_name_or_path", "m"), *values.items()], env, DeviceInfo())

    return parse_values
