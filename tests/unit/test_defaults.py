"""defaults.py: the values sm_train supplies below the user's: SageMaker defaults, checkpoint dirs, early stopping."""

import json
from pathlib import Path

import pytest

from sm_train.config import parse
from sm_train.device import DeviceInfo
from sm_train.env import from_environ
from sm_train.errors import ConfigError


def test_sagemaker_defaults(parsed) -> None:
    args = parsed().training_args
    assert args.save_total_limit == 2 and args.report_to in ([], "none")
    assert args.disable_tqdm is True  # pytest's stdout is not a terminal


def test_checkpoint_dir_hyperparameter_and_one_folder_per_host(tmp_path: Path) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    single = parse([("model_name_or_path", "m"), ("checkpoint_dir", "/ckpt")], env, DeviceInfo()).training_args
    assert single.output_dir == "/ckpt" and not single.save_on_each_node
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}))
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    args = parse([("model_name_or_path", "m")], env, DeviceInfo()).training_args
    assert args.output_dir == str(tmp_path / "checkpoints" / "algo-2")
    assert args.save_on_each_node  # every host keeps a whole checkpoint of its own to resume from


def test_early_stopping_evaluates_at_every_save_and_keeps_the_best_model(parsed) -> None:
    args = parsed(early_stopping_patience=3, save_steps=50).training_args
    assert args.load_best_model_at_end and args.eval_strategy == "steps" and args.eval_steps == 50
    assert args.metric_for_best_model == "loss"
    assert parsed(early_stopping_patience=3, save_strategy="epoch").training_args.eval_strategy == "epoch"
    assert parsed(early_stopping_patience=3, evaluation_strategy="epoch").training_args.save_strategy == "epoch"
    args = parsed(early_stopping_patience=3, logging_steps=30).training_args
    assert args.eval_steps == args.save_steps == 500
    args = parsed(early_stopping_patience=3, load_best_model_at_end=False).training_args
    assert not args.load_best_model_at_end and args.metric_for_best_model == "loss"
    with pytest.raises(ConfigError, match="early_stopping_patience needs evaluations during training"):
        parsed(early_stopping_patience=3, save_strategy="no")
    qa = parsed(task="question-answering", early_stopping_patience=3).training_args
    assert qa.metric_for_best_model == "f1"
    with pytest.raises(ConfigError, match="'early_stopping_patience' must be at least 1"):
        parsed(early_stopping_patience=0)
