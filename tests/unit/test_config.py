"""config.py: the one parser: sources, unknown and wrong values, reserved keys and what a Config holds."""

import json
import logging
from pathlib import Path

import pytest

from sm_train import device
from sm_train.config import parse, source_items
from sm_train.device import DeviceInfo
from sm_train.env import SageMakerEnv, from_environ
from sm_train.errors import ConfigError

CPU = DeviceInfo()


@pytest.mark.parametrize("given", ["/opt/ml/model", "/opt/ml/checkpoints", "out"])
def test_checkpoints_always_go_to_the_checkpoint_dir(env, parsed, given, caplog) -> None:
    caplog.set_level(logging.INFO)
    cfg = parsed(output_dir=given)
    assert cfg.training_args.output_dir == str(env.checkpoint_dir)
    assert "output_dir=" in caplog.text


def test_unknown_key_suggests_the_closest(parsed) -> None:
    with pytest.raises(ConfigError, match="Unknown hyperparameter 'learning_rat'.*learning_rate"):
        parsed(learning_rat=1e-5)
    with pytest.raises(ConfigError, match="text_column"):
        parsed(text_colum="x")


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("learning_rate", "fast", "Hyperparameter 'learning_rate' must be a number, got 'fast'"),
        ("num_train_epochs", [1, 2], "'num_train_epochs' takes a single value"),
        ("per_device_train_batch_size", 0, "'per_device_train_batch_size' must be at least 1, got 0"),
        ("max_train_samples", 0, "'max_train_samples' must be at least 1"),
        (
            "lr_scheduler_type",
            "wobbly",
            "Hyperparameter 'lr_scheduler_type': invalid choice: 'wobbly' \\(choose from 'linear'",
        ),
        ("learning_rate", -1, "'learning_rate' must not be negative"),
        ("max_seq_length", 0, "'max_seq_length' must be at least 8 tokens, got 0"),
    ],
)
def test_wrong_values_are_specific(parsed, key, value, pattern) -> None:
    with pytest.raises(ConfigError, match=pattern):
        parsed(**{key: value})


def test_unknown_task_lists_the_supported_ones(parsed) -> None:
    with pytest.raises(ConfigError, match="Unknown task 'translation'. Supported tasks: text-classification"):
        parsed(task="translation")


def test_reserved_keys_are_not_hyperparameters(parsed) -> None:
    cfg = parsed(sagemaker_program="train.py", _tuning_objective_metric="eval_loss")
    assert "sagemaker_program" not in cfg.hyperparameters


def test_model_channel_is_the_default_model(tmp_path: Path) -> None:
    (tmp_path / "input" / "data" / "model").mkdir(parents=True)
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert parse([], env, CPU).job.model_name_or_path == str(tmp_path / "input" / "data" / "model")
    assert parse([("model_name_or_path", "x")], env, CPU).job.model_name_or_path == "x"


def test_parsing_asks_no_hardware(env, monkeypatch) -> None:
    """The caller describes the device once (cli.train, check) and passes it in: parsing never asks torch."""
    monkeypatch.setattr(device, "describe", lambda: pytest.fail("config.parse described the device itself"))
    assert not parse([("model_name_or_path", "m")], env, CPU).training_args.bf16


def test_argv_is_ignored_inside_sagemaker(tmp_path: Path) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"model_name_or_path": '"m"', "epochs": "2"}))
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    # What toolkit 5.1.1's /bin/sh would have made of the same values: never read.
    cfg = parse(source_items(env, ["--epochs", "7", "[a,", "b]"]), env, CPU)
    assert cfg.training_args.num_train_epochs == 2.0


def test_secrets_are_redacted_in_logs_and_config(parsed, caplog) -> None:
    caplog.set_level(logging.INFO)
    for name, token in (("hub_token", "hf_SECRET123"), ("push_to_hub_token", "hf_OTHER456")):
        cfg = parsed(**{name: token})
        assert token not in caplog.text
        assert cfg.redacted()["hub_token"] == "***"
        assert cfg.training_args.hub_token == token
    with pytest.raises(ConfigError) as conflict:
        parsed(hub_token="hf_SECRET123", push_to_hub_token="hf_OTHER456")
    assert "hf_" not in str(conflict.value)


def test_signal_and_timer_settings(parsed) -> None:
    cfg = parsed(save_every_minutes="2.5", sigterm_grace_seconds=30)
    assert cfg.job.save_every_minutes == 2.5 and cfg.job.sigterm_grace_seconds == 30
    assert cfg.training_args.restore_callback_states_from_checkpoint is True
    with pytest.raises(ConfigError, match="'save_every_minutes' must be positive"):
        parsed(save_every_minutes=0)


def test_question_answering_judges_the_best_model_by_f1_only_when_it_loads_it(env, parsed) -> None:
    best = {"task": "question-answering", "load_best_model_at_end": "true", "eval_strategy": "steps"}
    args = parsed(**best).training_args
    assert args.metric_for_best_model == "f1" and args.greater_is_better
    assert parsed(**best, metric_for_best_model="exact_match").training_args.metric_for_best_model == "exact_match"
    assert parsed(task="question-answering").training_args.metric_for_best_model is None
    flag = parse(source_items(env, ["--model_name_or_path", "m", "--group_by_length"]), env, CPU)
    assert flag.training_args.train_sampling_strategy == "group_by_length"  # a value-less flag is true, translated too


def _sagemaker_env(tmp_path: Path, hyperparameters: dict[str, str]) -> SageMakerEnv:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    return from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})


def _parsed(env: SageMakerEnv, argv: list[str] | None = None):
    """The job's Config from its sources: hyperparameters.json inside SageMaker, else argv."""
    return parse(source_items(env, argv or []), env, CPU)


@pytest.mark.parametrize(
    "dialect",
    [
        lambda values: {k: v for k, v in values.items()},  # SDK v3 and boto3: raw strings
        lambda values: {k: json.dumps(v) for k, v in values.items()},  # SDK v2: each value json.dumps'ed
    ],
    ids=["raw-strings", "sdk-v2-json"],
)
def test_a_string_field_keeps_the_text_given_in_every_dialect(tmp_path: Path, dialect) -> None:
    values = {"model_name_or_path": "m", "run_name": "3.10", "hub_model_id": "1e3", "text_column": "0.10"}
    cfg = _parsed(_sagemaker_env(tmp_path, dialect(values)))
    assert cfg.training_args.run_name == "3.10" and cfg.training_args.hub_model_id == "1e3"
    assert cfg.task_args.text_column == "0.10"
    argv = _parsed(from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path / "none")}), ["--run_name", "3.10"])
    assert argv.training_args.run_name == "3.10"


def test_raw_numbers_and_flags_are_typed_by_their_field(tmp_path: Path) -> None:
    raw = {"model_name_or_path": "m", "epochs": "2", "learning_rate": "3e-5", "fp16": "false", "label_names": '["a"]'}
    cfg = _parsed(_sagemaker_env(tmp_path, raw))
    args = cfg.training_args
    assert args.num_train_epochs == 2.0 and args.learning_rate == 3e-5 and args.fp16 is False
    assert args.label_names == ["a"]
    unset = _sagemaker_env(tmp_path / "n", {"model_name_or_path": "m", "max_steps": "null"})
    assert _parsed(unset).training_args.max_steps == -1


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([("epochs", "3"), ("num_train_epochs", "1")], "'epochs' and 'num_train_epochs' both set 'num_train_epochs'"),
        ([("learning-rate", "1"), ("learning_rate", "2")], "'learning-rate' and 'learning_rate' both set"),
        ([("--lr", "1"), ("--lr", "2")], "'lr' is given twice"),
    ],
)
def test_one_value_per_field(env, items, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse([("model_name_or_path", "m"), *items], env, CPU)


def test_check_collects_every_hyperparameter_problem_and_parses_the_rest(env) -> None:
    problems: list[str] = []
    items = [("model_name_or_path", "m"), ("learnin_rate", "1"), ("per_device_train_batch_size", "0"), ("seed", "-3"),
             ("epochs", "2"), ("num_train_epochs", "3"), ("fp16", "maybe"), ("max_steps", "7")]  # fmt: skip
    cfg = parse(items, env, CPU, problems)
    assert len(problems) == 5, problems
    for expected in ("'learnin_rate'", "'per_device_train_batch_size'", "'seed'", "both set", "'fp16'"):
        assert any(expected in problem for problem in problems), expected
    assert cfg.training_args.max_steps == 7 and cfg.training_args.num_train_epochs == 2
    assert cfg.training_args.per_device_train_batch_size == 8  # set aside: the default applies
    with pytest.raises(ConfigError, match="learnin_rate"):
        parse(items, env, CPU)  # a job stops at the first


@pytest.mark.parametrize(
    "objective",
    ["eval_f1", '"eval_f1"'],  # the tuner's key as SageMaker writes it, and JSON-quoted as SDK v2 encodes values
)
def test_a_tuning_trial_judges_and_evaluates_by_its_objective(tmp_path: Path, objective: str, caplog) -> None:
    caplog.set_level(logging.INFO)
    env = _sagemaker_env(tmp_path, {"model_name_or_path": "m", "_tuning_objective_metric": objective})
    assert env.tuning_objective == "eval_f1"
    cfg = _parsed(env)
    args = cfg.training_args
    assert args.metric_for_best_model == "f1" and args.greater_is_better is True
    assert args.eval_strategy == "epoch"  # the tuner (and its early stopping) reads the objective every epoch
    assert "_tuning_objective_metric" not in cfg.hyperparameters and "tuning objective eval_f1" in caplog.text


def test_a_tuning_objective_keeps_what_the_user_set(tmp_path: Path) -> None:
    given = {"model_name_or_path": "m", "metric_for_best_model": "accuracy", "eval_strategy": "steps"}
    cfg = _parsed(_sagemaker_env(tmp_path, {**given, "_tuning_objective_metric": "eval_f1"}))
    assert cfg.training_args.metric_for_best_model == "accuracy" and cfg.training_args.eval_strategy == "steps"
    stopping = {"model_name_or_path": "m", "early_stopping_patience": "2", "_tuning_objective_metric": "eval_loss"}
    args = _parsed(_sagemaker_env(tmp_path / "stop", stopping)).training_args
    assert args.metric_for_best_model == "loss" and args.greater_is_better is False
    assert args.eval_strategy == args.save_strategy == "steps"  # early stopping's schedule, which the best model needs


@pytest.mark.parametrize("objective", ["validation:accuracy", "eval_bleu", "train_loss"])
def test_an_objective_that_is_no_evaluation_metric_changes_nothing(tmp_path: Path, objective: str) -> None:
    env = _sagemaker_env(tmp_path, {"model_name_or_path": "m", "_tuning_objective_metric": objective})
    args = _parsed(env).training_args
    assert args.metric_for_best_model is None and args.eval_strategy == "no"


def test_the_reserved_tuning_key_is_skipped_in_argv_too(env) -> None:
    cfg = parse(source_items(env, ["--model_name_or_path", "m", "--_tuning_objective_metric", "eval_f1"]), env, CPU)
    assert cfg.training_args.metric_for_best_model is None and "_tuning_objective_metric" not in cfg.hyperparameters


def test_greater_is_better_follows_the_metric(parsed) -> None:
    """transformers maximises any metric not named *loss: a regression judged by mse would keep its worst model."""
    best = {"load_best_model_at_end": "true", "eval_strategy": "steps"}
    assert parsed(**best, metric_for_best_model="mse").training_args.greater_is_better is False
    assert parsed(**best, metric_for_best_model="accuracy").training_args.greater_is_better is True
    assert parsed(**best, metric_for_best_model="mse", greater_is_better="true").training_args.greater_is_better


@pytest.mark.parametrize(
    ("given", "found"),
    [
        ("none", []),
        ("tensorboard", ["tensorboard"]),
        ("tensorboard,mlflow", ["tensorboard", "mlflow"]),  # SDK v3 and the command line
        (["tensorboard", "mlflow"], ["tensorboard", "mlflow"]),  # SDK v2
        ('["tensorboard", "mlflow"]', ["tensorboard", "mlflow"]),
    ],
)
def test_report_to_takes_one_integration_or_several(parsed, given, found) -> None:
    assert parsed(report_to=given).training_args.report_to == found
