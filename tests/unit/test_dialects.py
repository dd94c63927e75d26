"""dialects.py: the forms a value arrives in (JSON-typed, raw strings, the toolkit's argv) reach their fields."""

import json

import pytest

from sm_train.config import load, parse
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


FSDP_CONFIG = {"transformer_layer_cls_to_wrap": ["BertLayer"], "state_dict_type": "SHARDED_STATE_DICT"}


@pytest.mark.parametrize(
    "fsdp_config",
    [
        FSDP_CONFIG,
        json.dumps(FSDP_CONFIG),
        "transformer_layer_cls_to_wrap=BertLayer,state_dict_type=SHARDED_STATE_DICT",
    ],
)
def test_fsdp_reaches_training_arguments_in_every_dialect(parsed, fsdp_config) -> None:
    """SM_HPS/hyperparameters.json (a JSON object), a raw JSON string (SDK v3) and the toolkit's argv (k=v,k2=v2)."""
    args = parsed(fsdp="full_shard auto_wrap", fsdp_config=fsdp_config).training_args
    assert args.fsdp  # transformers 5 turns the options into True and fsdp_config; 4.x keeps the options
    assert args.fsdp_config["transformer_layer_cls_to_wrap"] == ["BertLayer"]
    assert args.fsdp_config["state_dict_type"] == "SHARDED_STATE_DICT"


def test_fsdp_on_the_toolkits_argv(env) -> None:
    argv = ["--model_name_or_path", "m", "--fsdp", "full_shard auto_wrap", "--fsdp_config", "min_num_params=10"]
    args = load(env, argv).training_args
    assert args.fsdp and args.fsdp_config["min_num_params"] == 10


@pytest.mark.parametrize("deepspeed", [{"zero_optimization": {"stage": 2}}, '{"zero_optimization": {"stage": 2}}'])
def test_deepspeed_reaches_training_arguments(parsed, monkeypatch, deepspeed) -> None:
    """A JSON object or string reaches TrainingArguments as the object (a string is read as a file path); DeepSpeed
    itself is not installed here, so the objects it would build are stand-ins."""
    import accelerate.utils
    import transformers.integrations.deepspeed as hf_deepspeed

    given = []
    monkeypatch.setattr(hf_deepspeed, "HfTrainerDeepSpeedConfig", lambda value: given.append(value) or _Stub())
    monkeypatch.setattr(accelerate.utils, "DeepSpeedPlugin", lambda **kwargs: _Stub())
    args = parsed(deepspeed=deepspeed).training_args
    assert args.deepspeed == {"zero_optimization": {"stage": 2}} and given == [args.deepspeed]


def test_deepspeed_file_name_reaches_training_arguments(parsed, monkeypatch) -> None:
    import accelerate.utils
    import transformers.integrations.deepspeed as hf_deepspeed

    monkeypatch.setattr(hf_deepspeed, "HfTrainerDeepSpeedConfig", lambda value: _Stub())
    monkeypatch.setattr(accelerate.utils, "DeepSpeedPlugin", lambda **kwargs: _Stub())
    assert parsed(deepspeed="ds_config.json").training_args.deepspeed == "ds_config.json"


class _Stub:
    def trainer_config_process(self, args: object) -> None:
        pass


# One job's values, in every kind a field takes.
EVERY_KIND = {
    "model_name_or_path": "m",
    "logging_first_step": True,
    "dataloader_drop_last": False,
    "seed": 7,
    "learning_rate": 5e-05,
    "warmup_steps": 0.1,
    "report_to": "none",
    "label_names": ["start_positions", "end_positions"],
    "lr_scheduler_kwargs": {"num_cycles": 2, "power": 1.0},
}


def _sdk_v3(value):  # noqa: ANN001, ANN202 - as sagemaker-train's safe_serialize (the e2e tests use its own)
    return value if isinstance(value, str) else json.dumps(value)


@pytest.mark.parametrize(
    "dialect",
    [
        "sdk-v3 raw strings",
        "sdk-v3 driver argv (--key value, from the raw strings)",
        "toolkit argv (str() of each value)",
    ],
)
def test_every_dialect_types_a_job_as_sdk_v2s_json_does(env, dialect: str) -> None:
    expected = parse(list(json.loads(json.dumps(EVERY_KIND)).items()), env)  # SDK v2: json.dumps, read back typed
    if dialect.startswith("sdk-v3 raw"):
        cfg = parse([(k, _sdk_v3(v)) for k, v in EVERY_KIND.items()], env)
    elif dialect.startswith("sdk-v3 driver"):
        cfg = load(env, [token for k, v in EVERY_KIND.items() for token in (f"--{k}", _sdk_v3(v))])
    else:
        toolkit = {dict: lambda d: ",".join(f"{k}={v}" for k, v in d.items())}
        cfg = load(env, [t for k, v in EVERY_KIND.items() for t in (f"--{k}", toolkit.get(type(v), str)(v))])
    assert cfg.job == expected.job and cfg.task_args == expected.task_args
    assert cfg.training_args.to_dict() == expected.training_args.to_dict()
    assert cfg.training_args.logging_first_step is True and cfg.training_args.dataloader_drop_last is False
    assert cfg.training_args.lr_scheduler_kwargs == {"num_cycles": 2, "power": 1.0}
