"""env.py: the frozen snapshot of SM_* variables and /opt/ml files, on a relocated root."""

import json
from pathlib import Path

import pytest

from sm_train.env import decode_value, from_environ, output_dir_of
from sm_train.errors import ConfigError


def tree(tmp_path: Path, hyperparameters: dict | None = None, **config_files: dict) -> dict[str, str]:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    if hyperparameters is not None:
        (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    for name, content in config_files.items():
        (config / f"{name}.json").write_text(json.dumps(content))
    return {"SAGEMAKER_BASE_DIR": str(tmp_path)}


def test_paths_follow_the_relocated_root(tmp_path: Path) -> None:
    env = from_environ(tree(tmp_path))
    assert env.model_dir == tmp_path / "model"
    assert env.output_dir == tmp_path / "output"
    assert env.output_data_dir == tmp_path / "output" / "data"
    assert env.checkpoint_dir == tmp_path / "checkpoints"
    assert not env.checkpoints_synced
    assert env.hyperparameters is None and env.hyperparameters_source == "argv"


def test_default_root_is_opt_ml() -> None:
    env = from_environ({})
    assert env.model_dir == Path("/opt/ml/model") and env.checkpoint_dir == Path("/opt/ml/checkpoints")


def test_sm_variables_win_over_the_root(tmp_path: Path) -> None:
    environ = tree(tmp_path) | {
        "SM_MODEL_DIR": "/elsewhere/model",
        "SM_OUTPUT_DATA_DIR": "/elsewhere/data",
        "SM_OUTPUT_DIR": "/elsewhere/out",
        "SM_HOSTS": '["algo-1","algo-2"]',
        "SM_CURRENT_HOST": "algo-2",
        "SM_NUM_GPUS": "4",
        "SM_NUM_CPUS": "48",
        "SM_TRAINING_ENV": '{"job_name": "job-7"}',
        "SM_FRAMEWORK_PARAMS": '{"sagemaker_torch_distributed_enabled": true}',
    }
    env = from_environ(environ)
    assert env.model_dir == Path("/elsewhere/model")
    assert env.output_data_dir == Path("/elsewhere/data")
    assert env.output_dir == Path("/elsewhere/out")
    assert env.hosts == ("algo-1", "algo-2") and env.current_host == "algo-2"
    assert env.num_gpus == 4 and env.num_cpus == 48
    assert env.job_name == "job-7"
    assert env.framework_params == {"sagemaker_torch_distributed_enabled": True}


def test_checkpoint_dir_comes_from_checkpointconfig(tmp_path: Path) -> None:
    environ = tree(tmp_path, checkpointconfig={"LocalPath": "/opt/ml/ckpt/", "S3Uri": "s3://b/c/"})
    env = from_environ(environ)
    assert env.checkpoint_dir == Path("/opt/ml/ckpt")
    assert env.checkpoints_synced


def test_hyperparameters_json_sdk_v2_and_v3_values(tmp_path: Path) -> None:
    hps = {
        "model_name_or_path": '"distilbert-base-uncased"',  # SDK v2: json.dumps of a string
        "epochs": "3",
        "fp16": "true",
        "label_names": '["a", "b"]',
        "raw_name": "bert-base",  # SDK v3 / boto3: raw string, not JSON
        "nothing": "null",
        "sagemaker_program": '"scripts/train.py"',
        "sagemaker_torch_distributed_enabled": "true",
        "_tuning_objective_metric": '"eval_loss"',
    }
    env = from_environ(tree(tmp_path, hps))
    # JSON strings are decoded; other text is typed later by the field it reaches (config.py).
    assert env.hyperparameters == {
        "model_name_or_path": "distilbert-base-uncased",
        "epochs": "3",
        "fp16": "true",
        "label_names": '["a", "b"]',
        "raw_name": "bert-base",
        "nothing": "null",
    }
    assert env.framework_params == {"sagemaker_torch_distributed_enabled": True}
    assert env.hyperparameters_source.endswith("hyperparameters.json")


def test_sm_hps_when_there_is_no_file(tmp_path: Path) -> None:
    environ = tree(tmp_path) | {"SM_HPS": '{"epochs": 2, "sagemaker_x": 1}'}
    env = from_environ(environ)
    assert env.hyperparameters == {"epochs": 2}
    assert env.hyperparameters_source == "SM_HPS"


def test_channels_from_sm_variables(tmp_path: Path) -> None:
    environ = tree(tmp_path) | {"SM_CHANNELS": '["test","train"]', "SM_CHANNEL_TRAIN": "/data/train"}
    env = from_environ(environ)
    assert env.channels == {"test": tmp_path / "input" / "data" / "test", "train": Path("/data/train")}


def test_channels_from_inputdataconfig_then_folders(tmp_path: Path) -> None:
    environ = tree(tmp_path, inputdataconfig={"train": {"TrainingInputMode": "File"}})
    assert list(from_environ(environ).channels) == ["train"]
    (tmp_path / "input/config/inputdataconfig.json").unlink()
    for name in ("validation", "train", ".hidden"):
        (tmp_path / "input" / "data" / name).mkdir(parents=True)
    assert list(from_environ(environ).channels) == ["train", "validation"]


def test_hosts_from_resourceconfig(tmp_path: Path) -> None:
    environ = tree(tmp_path, resourceconfig={"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]})
    env = from_environ(environ)
    assert env.hosts == ("algo-1", "algo-2") and env.current_host == "algo-2"
    assert env.resource_config["current_host"] == "algo-2"


def test_decode_value_keeps_raw_text_for_its_field() -> None:
    assert decode_value('"1.10"') == "1.10"  # SDK v2: a JSON string
    # SDK v3 and boto3 send raw strings: json.loads would make run_name "3.10" 3.1 and "1e400" infinity.
    assert decode_value("3.10") == "3.10" and decode_value("1e400") == "1e400"
    assert decode_value("007") == "007" and decode_value("NaN") == "NaN"
    assert decode_value('"unterminated') == '"unterminated'
    assert decode_value(5) == 5


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("hyperparameters", "{not json", r"hyperparameters\.json cannot be read as JSON"),
        ("hyperparameters", '["epochs", "3"]', r"hyperparameters\.json must hold a JSON object, got a list"),
        ("hyperparameters", '{"epochs": "3", "epochs": "1"}', r"the key 'epochs' appears twice"),
        ("resourceconfig", '{"hosts": "algo-1", "current_host": "algo-1"}', r"'hosts' in .* must be a non-empty list"),
        ("resourceconfig", '{"hosts": ["algo-1"], "current_host": "algo-9"}', r"'algo-9' is not one of"),
        ("resourceconfig", "", r"resourceconfig\.json cannot be read as JSON"),
        ("inputdataconfig", '"train"', r"inputdataconfig\.json must hold a JSON object, got a string"),
        ("checkpointconfig", '{"LocalPath": 5}', r"'LocalPath' in .* must be a path string"),
    ],
)
def test_malformed_config_files_are_named(tmp_path: Path, name: str, content: str, expected: str) -> None:
    environ = tree(tmp_path)
    (tmp_path / "input" / "config" / f"{name}.json").write_text(content)
    with pytest.raises(ConfigError, match=expected):
        from_environ(environ)


def test_malformed_sm_variables_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SM_HOSTS must hold a JSON list, got a string"):
        from_environ(tree(tmp_path) | {"SM_HOSTS": '"algo-1"'})
    with pytest.raises(ConfigError, match="SM_HPS is not valid JSON"):
        from_environ(tree(tmp_path / "b") | {"SM_HPS": "{epochs: 3}"})


def test_the_failure_file_location_needs_no_config_file() -> None:
    assert output_dir_of({"SAGEMAKER_BASE_DIR": "/x"}) == Path("/x/output")
    assert output_dir_of({"SAGEMAKER_BASE_DIR": "/x", "SM_OUTPUT_DIR": "/y"}) == Path("/y")
