import json
import logging
from pathlib import Path
from typing import Any

import pytest

from sm_train.config import load, parse
from sm_train.dialects import NO_VALUE, argv_items
from sm_train.env import from_environ
from sm_train.errors import ConfigError


@pytest.fixture
def env(tmp_path: Path):
    (tmp_path / "input" / "config").mkdir(parents=True)
    return from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})


def parsed(env, **values: Any):
    return parse([("model_name_or_path", "m"), *values.items()], env)


@pytest.mark.parametrize("value", [True, "true", "True", "TRUE", "1", 1, "yes", "y", "t"])
def test_true_dialects(env, value) -> None:
    assert parsed(env, logging_first_step=value).training_args.logging_first_step is True


@pytest.mark.parametrize("value", [False, "false", "False", "0", 0, "no", "n", "f"])
def test_false_dialects(env, value) -> None:
    assert parsed(env, dataloader_drop_last=value).training_args.dataloader_drop_last is False


def test_bad_boolean_names_key_and_value(env) -> None:
    with pytest.raises(ConfigError, match=r"'logging_first_step' must be a boolean .* 'maybe'"):
        parsed(env, logging_first_step="maybe")


@pytest.mark.parametrize("value", [None, "", "None", "null"])
def test_unset_values_drop_the_key(env, value) -> None:
    cfg = parsed(env, max_train_samples=value, seed=value, learning_rate=value)
    assert cfg.job.max_train_samples is None
    assert cfg.training_args.seed == 42 and cfg.training_args.learning_rate == 5e-05


def test_none_lower_case_is_a_value(env) -> None:
    assert parsed(env, report_to="none").training_args.report_to in ([], "none", ["none"])


@pytest.mark.parametrize(
    "value",
    [
        ["start_positions", "end_positions"],
        '["start_positions", "end_positions"]',
        "['start_positions', 'end_positions']",
        "start_positions,end_positions",
    ],
)
def test_list_dialects(env, value) -> None:
    assert parsed(env, label_names=value).training_args.label_names == ["start_positions", "end_positions"]


@pytest.mark.parametrize(
    "value", [{"num_cycles": 2, "power": 1.0}, '{"num_cycles": 2, "power": 1.0}', "num_cycles=2,power=1.0"]
)
def test_dict_dialects(env, value) -> None:
    cfg = parsed(env, lr_scheduler_kwargs=value)
    assert cfg.training_args.lr_scheduler_kwargs == {"num_cycles": 2, "power": 1.0}


def test_broken_json_dict_is_a_specific_error(env) -> None:
    with pytest.raises(ConfigError, match="lr_scheduler_kwargs.*not valid JSON"):
        parsed(env, lr_scheduler_kwargs='{"num_cycles": }')


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
    args = parse([("model_name_or_path", "m"), (key, value)], env).training_args
    actual = getattr(args, attribute)
    assert (actual.value if hasattr(actual, "value") else actual) == expected
    if not key.startswith("--"):
        assert f"became {attribute}" in caplog.text or "train-batch-size" in key


def test_model_name_alias(env) -> None:
    assert parse([("model_name", "bert")], env).job.model_name_or_path == "bert"


def test_transformers_5_removals_are_translated(env, caplog) -> None:
    caplog.set_level(logging.INFO)
    cfg = parsed(
        env,
        warmup_ratio=0.1,
        group_by_length=True,
        overwrite_output_dir=True,
        logging_dir="/x",
        save_safetensors=True,
        mp_parameters={"partitions": 2},
    )
    args = cfg.training_args
    assert args.warmup_steps == 0.1
    assert args.train_sampling_strategy == "group_by_length"
    for dropped in ("overwrite_output_dir", "logging_dir", "save_safetensors", "mp_parameters"):
        assert f"hyperparameter {dropped} dropped" in caplog.text


def test_group_by_length_false_is_dropped(env) -> None:
    assert parsed(env, group_by_length=False).training_args.train_sampling_strategy == "random"


@pytest.mark.parametrize("given", ["/opt/ml/model", "/opt/ml/checkpoints", "out"])
def test_checkpoints_always_go_to_the_checkpoint_dir(env, given, caplog) -> None:
    caplog.set_level(logging.INFO)
    cfg = parsed(env, output_dir=given)
    assert cfg.training_args.output_dir == str(env.checkpoint_dir)
    assert "output_dir=" in caplog.text


def test_sagemaker_defaults(env) -> None:
    args = parsed(env).training_args
    assert args.save_total_limit == 2 and args.report_to in ([], "none")
    assert args.disable_tqdm is True  # pytest's stdout is not a terminal


def test_unknown_key_suggests_the_closest(env) -> None:
    with pytest.raises(ConfigError, match="Unknown hyperparameter 'learning_rat'.*learning_rate"):
        parsed(env, learning_rat=1e-5)
    with pytest.raises(ConfigError, match="text_column"):
        parsed(env, text_colum="x")


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
def test_wrong_values_are_specific(env, key, value, pattern) -> None:
    with pytest.raises(ConfigError, match=pattern):
        parsed(env, **{key: value})


def test_nothing_to_train(env) -> None:
    with pytest.raises(ConfigError, match="Nothing to train"):
        parsed(env, num_train_epochs=0)


def test_unknown_task_lists_the_supported_ones(env) -> None:
    with pytest.raises(ConfigError, match="Unknown task 'translation'. Supported tasks: text-classification"):
        parsed(env, task="translation")


def test_reserved_keys_are_not_hyperparameters(env) -> None:
    cfg = parsed(env, sagemaker_program="train.py", _tuning_objective_metric="eval_loss")
    assert "sagemaker_program" not in cfg.hyperparameters


def test_model_channel_is_the_default_model(tmp_path: Path) -> None:
    (tmp_path / "input" / "data" / "model").mkdir(parents=True)
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert parse([], env).job.model_name_or_path == str(tmp_path / "input" / "data" / "model")
    assert parse([("model_name_or_path", "x")], env).job.model_name_or_path == "x"


def test_argv_is_ignored_inside_sagemaker(tmp_path: Path) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"model_name_or_path": '"m"', "epochs": "2"}))
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    # What toolkit 5.1.1's /bin/sh would have made of the same values: never read.
    cfg = load(env, ["--epochs", "7", "[a,", "b]"])
    assert cfg.training_args.num_train_epochs == 2.0


def test_argv_with_the_toolkits_rendering(env) -> None:
    argv = [
        "--model_name_or_path",
        "m",
        "--logging_first_step",
        "False",
        "--label_names",
        "['a', 'b']",
        "--lr_scheduler_kwargs",
        "num_cycles=2,power=1.0",
        "--max_train_samples",
        "",
        "--seed=7",
        "--learning_rate",
        "5e-05",
        "--dataloader_drop_last",
    ]
    cfg = load(env, argv)
    args = cfg.training_args
    assert args.logging_first_step is False and args.label_names == ["a", "b"]
    assert args.lr_scheduler_kwargs == {"num_cycles": 2, "power": 1.0}
    assert cfg.job.max_train_samples is None and args.seed == 7 and args.learning_rate == 5e-05
    assert args.dataloader_drop_last is True


def test_argv_items_shapes() -> None:
    assert argv_items(["--a", "1", "--b", "x", "y", "-c", "-1", "--d"]) == [
        ("--a", "1"),
        ("--b", ["x", "y"]),
        ("-c", "-1"),
        ("--d", NO_VALUE),
    ]
    with pytest.raises(ConfigError, match="Unexpected argument 'stray'"):
        argv_items(["stray"])


def test_value_less_flag_for_a_value_field_fails(env) -> None:
    with pytest.raises(ConfigError, match="'seed' needs a value"):
        load(env, ["--model_name_or_path", "m", "--seed"])


def test_secrets_are_redacted_in_logs_and_config(env, caplog) -> None:
    caplog.set_level(logging.INFO)
    cfg = parsed(env, hub_token="hf_SECRET123", push_to_hub_token="hf_OTHER456")
    assert "hf_SECRET123" not in caplog.text and "hf_OTHER456" not in caplog.text
    assert cfg.redacted()["hub_token"] == "***"
    assert cfg.training_args.hub_token in ("hf_SECRET123", "hf_OTHER456")


def test_boolean_settings_with_secret_like_names_are_not_secrets() -> None:
    from sm_train.redact import redact_mapping, scrub, secret_values

    pairs = [("average_tokens_across_devices", "True"), ("include_num_input_tokens_seen", True),
             ("hub_token", "hf_SECRET123"), ("db_password", 20240101)]  # fmt: skip
    assert secret_values(pairs) == ["hf_SECRET123", "20240101"]
    assert scrub("True: token hf_SECRET123", secret_values(pairs)) == "True: token ***"
    assert redact_mapping(dict(pairs)) == {**dict(pairs), "hub_token": "***", "db_password": "***"}


def test_checkpoint_dir_hyperparameter_and_one_folder_per_host(tmp_path: Path) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    single = parse([("model_name_or_path", "m"), ("checkpoint_dir", "/ckpt")], env).training_args
    assert single.output_dir == "/ckpt" and not single.save_on_each_node
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}))
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    args = parse([("model_name_or_path", "m")], env).training_args
    assert args.output_dir == str(tmp_path / "checkpoints" / "algo-2")
    assert args.save_on_each_node  # every host keeps a whole checkpoint of its own to resume from


def test_signal_and_timer_settings(env) -> None:
    cfg = parsed(env, save_every_minutes="2.5", sigterm_grace_seconds=30)
    assert cfg.job.save_every_minutes == 2.5 and cfg.job.sigterm_grace_seconds == 30
    assert cfg.training_args.restore_callback_states_from_checkpoint is True
    with pytest.raises(ConfigError, match="'save_every_minutes' must be positive"):
        parsed(env, save_every_minutes=0)


def test_question_answering_judges_the_best_model_by_f1_only_when_it_loads_it(env) -> None:
    best = {"task": "question-answering", "load_best_model_at_end": "true", "eval_strategy": "steps"}
    args = parsed(env, **best).training_args
    assert args.metric_for_best_model == "f1" and args.greater_is_better
    assert (
        parsed(env, **best, metric_for_best_model="exact_match").training_args.metric_for_best_model == "exact_match"
    )
    assert parsed(env, task="question-answering").training_args.metric_for_best_model is None
    assert load(env, ["--model_name_or_path", "m", "--group_by_length"]).training_args.train_sampling_strategy == (
        "group_by_length"  # a value-less flag is true, also where a name is translated
    )


def test_early_stopping_evaluates_at_every_save_and_keeps_the_best_model(env) -> None:
    args = parsed(env, early_stopping_patience=3, save_steps=50).training_args
    assert args.load_best_model_at_end and args.eval_strategy == "steps" and args.eval_steps == 50
    assert args.metric_for_best_model == "loss"
    assert parsed(env, early_stopping_patience=3, save_strategy="epoch").training_args.eval_strategy == "epoch"
    assert parsed(env, early_stopping_patience=3, evaluation_strategy="epoch").training_args.save_strategy == "epoch"
    args = parsed(env, early_stopping_patience=3, logging_steps=30).training_args
    assert args.eval_steps == args.save_steps == 500
    args = parsed(env, early_stopping_patience=3, load_best_model_at_end=False).training_args
    assert not args.load_best_model_at_end and args.metric_for_best_model == "loss"
    with pytest.raises(ConfigError, match="early_stopping_patience needs evaluations during training"):
        parsed(env, early_stopping_patience=3, save_strategy="no")
    qa = parsed(env, task="question-answering", early_stopping_patience=3).training_args
    assert qa.metric_for_best_model == "f1"
    with pytest.raises(ConfigError, match="'early_stopping_patience' must be at least 1"):
        parsed(env, early_stopping_patience=0)
