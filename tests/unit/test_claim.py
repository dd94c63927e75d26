"""claim.py: where a checkpoint dir may be: apart from the model, output, code and input dirs."""

from pathlib import Path

import pytest

from sm_train import claim
from sm_train.env import from_environ
from sm_train.errors import ConfigError


def env_of(tmp_path: Path):
    (tmp_path / "input" / "data" / "train").mkdir(parents=True)
    return from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})


@pytest.mark.parametrize(
    ("where", "conflict"),
    [
        ("model/ckpts", "is inside the model dir"),
        ("output/checkpoints", "is inside the output dir"),
        ("output/data/ckpt", "is inside the output dir"),
        ("input/data/train/ckpt", "is inside the 'train' input channel"),
        ("code/checkpoints", "is inside the code dir"),
        (".", "contains the model dir"),
    ],
)
def test_a_checkpoint_dir_where_it_loses_data_fails_naming_the_conflict(tmp_path: Path, where, conflict) -> None:
    env = env_of(tmp_path)
    with pytest.raises(ConfigError, match=conflict):
        claim.check_placement(tmp_path / where, env)
    claim.check_placement(tmp_path / "checkpoints", env)  # the default is fine


def test_a_checkpoint_dir_that_is_a_file(tmp_path: Path) -> None:
    env = env_of(tmp_path)
    (tmp_path / "ckpt").write_text("")
    with pytest.raises(ConfigError, match="cannot be created: .*ckpt is a file"):
        claim.check_placement(tmp_path / "ckpt" / "sub", env)
