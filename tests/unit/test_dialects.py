"""dialects.py: the forms a value arrives in (JSON-typed, raw strings, the toolkit's argv) reach their fields."""

import json

import pytest

from sm_train import cli
from sm_train.config import parse, source_items
from sm_train.device import DeviceInfo
from sm_train.dialects import NO_VALUE, argv_items, render
from sm_train.errors import ConfigError
from tests.jobs import make_tree

CPU = DeviceInfo()


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
    cfg = parse(source_items(env, argv), env, CPU)
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
        parse(source_items(env, ["--model_name_or_path", "m", "--seed"]), env, CPU)


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
    args = parse(source_items(env, argv), env, CPU).training_args
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
    expected = parse(list(json.loads(json.dumps(EVERY_KIND)).items()), env, CPU)  # SDK v2: json.dumps, read back typed
    if dialect.startswith("sdk-v3 raw"):
        cfg = parse([(k, _sdk_v3(v)) for k, v in EVERY_KIND.items()], env, CPU)
    elif dialect.startswith("sdk-v3 driver"):
        argv = [token for k, v in EVERY_KIND.items() for token in (f"--{k}", _sdk_v3(v))]
        cfg = parse(source_items(env, argv), env, CPU)
    else:
        toolkit = {dict: lambda d: ",".join(f"{k}={v}" for k, v in d.items())}
        argv = [t for k, v in EVERY_KIND.items() for t in (f"--{k}", toolkit.get(type(v), str)(v))]
        cfg = parse(source_items(env, argv), env, CPU)
    assert cfg.job == expected.job and cfg.task_args == expected.task_args
    assert cfg.training_args.to_dict() == expected.training_args.to_dict()
    assert cfg.training_args.logging_first_step is True and cfg.training_args.dataloader_drop_last is False
    assert cfg.training_args.lr_scheduler_kwargs == {"num_cycles": 2, "power": 1.0}


# A list or dict hyperparameter keeps its shape: a value of the other shape fails naming the field.


@pytest.mark.parametrize("value", [{"labels": 1}, '{"labels": 1}', [["labels"]], '[["a"], "b"]'])
def test_list_hyperparameters_refuse_objects_and_nesting(value) -> None:
    with pytest.raises(ConfigError, match=r"Hyperparameter 'label_names' takes a .*list.*; pass a JSON list"):
        render("label_names", value, "list")


@pytest.mark.parametrize("value", [["a"], '["a"]'])
def test_dict_hyperparameters_refuse_lists(value) -> None:
    with pytest.raises(ConfigError, match=r"Hyperparameter 'fsdp_config' takes a JSON object .* got a list"):
        render("fsdp_config", value, "dict")


def test_a_dict_for_label_names_fails_the_job(tmp_path, monkeypatch) -> None:
    job = make_tree(tmp_path, {"model_name_or_path": "m", "label_names": {"labels": 1}})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    assert cli.main(["train"]) == 1
    assert job.failure is not None and job.failure.startswith("Hyperparameter 'label_names' takes a list")
