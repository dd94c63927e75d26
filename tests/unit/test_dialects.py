"""dialects.py: the forms a value arrives in (JSON-typed, raw strings, the toolkit's argv) reach their fields."""

import pytest

from sm_train.config import load
from sm_train.dialects import NO_VALUE, argv_items
from sm_train.errors import ConfigError


@pytest.mark.parametrize("value", [True, "true", "True", "TRUE", "1", 1, "yes", "y", "t"])
def test_true_dialects(parsed, value) -> None:
    assert parsed(logging_first_step=value).training_args.logging_first_step is True


@pytest.mark.parametrize("value", [False, "false", "False", "0", 0, "no", "n", "f"])
def test_false_dialects(parsed, value) -> None:
    assert parsed(dataloader_drop_last=value).training_args.dataloader_drop_last is False


def test_bad_boolean_names_key_and_value(parsed) -> None:
    with pytest.raises(ConfigError, match=r"'logging_first_step' must be a boolean .* 'maybe'"):
        parsed(logging_first_step="maybe")


@pytest.mark.parametrize("value", [None, "", "None", "null"])
def test_unset_values_drop_the_key(parsed, value) -> None:
    cfg = parsed(max_train_samples=value, seed=value, learning_rate=value)
    assert cfg.job.max_train_samples is None
    assert cfg.training_args.seed == 42 and cfg.training_args.learning_rate == 5e-05


def test_none_lower_case_is_a_value(parsed) -> None:
    assert parsed(report_to="none").training_args.report_to in ([], "none", ["none"])


@pytest.mark.parametrize(
    "value",
    [
        ["start_positions", "end_positions"],
        '["start_positions", "end_positions"]',
        "['start_positions', 'end_positions']",
        "start_positions,end_positions",
    ],
)
def test_list_dialects(parsed, value) -> None:
    assert parsed(label_names=value).training_args.label_names == ["start_positions", "end_positions"]


@pytest.mark.parametrize(
    "value", [{"num_cycles": 2, "power": 1.0}, '{"num_cycles": 2, "power": 1.0}', "num_cycles=2,power=1.0"]
)
def test_dict_dialects(parsed, value) -> None:
    cfg = parsed(lr_scheduler_kwargs=value)
    assert cfg.training_args.lr_scheduler_kwargs == {"num_cycles": 2, "power": 1.0}


def test_broken_json_dict_is_a_specific_error(parsed) -> None:
    with pytest.raises(ConfigError, match="lr_scheduler_kwargs.*not valid JSON"):
        parsed(lr_scheduler_kwargs='{"num_cycles": }')


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
