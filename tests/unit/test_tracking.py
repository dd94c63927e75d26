"""tracking.py: where report_to=tensorboard writes, the managed-MLflow checks made at parse time, and the callbacks
that replace transformers' own (rank 0 only)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from sm_train import mlflow_run, tracking
from sm_train.config import parse
from sm_train.device import DeviceInfo
from sm_train.env import from_environ
from sm_train.errors import ConfigError

ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/my-server"


def environment(tmp_path: Path, **variables: str):
    (tmp_path / "input" / "config").mkdir(parents=True, exist_ok=True)
    return from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path), **variables})


def config(env, **values):
    return parse([("model_name_or_path", "m"), *values.items()], env, DeviceInfo())


def test_report_to_is_none_unless_set(parsed) -> None:
    assert parsed().training_args.report_to == []
    assert parsed(report_to="tensorboard").training_args.report_to == ["tensorboard"]


def test_tensorboard_writes_to_the_output_tensorboard_folder_by_default(tmp_path: Path) -> None:
    env = environment(tmp_path)
    assert tracking.tensorboard_dir(config(env, report_to="tensorboard"), env) == tmp_path / "output" / "tensorboard"


def test_the_variable_then_the_hyperparameter_choose_the_folder(tmp_path: Path) -> None:
    env = environment(tmp_path, TENSORBOARD_LOGGING_DIR=str(tmp_path / "from-variable"))
    assert tracking.tensorboard_dir(config(env), env) == tmp_path / "from-variable"
    assert tracking.tensorboard_dir(config(env, tensorboard_dir=str(tmp_path / "mine")), env) == tmp_path / "mine"
    assert tracking.tensorboard_dir(config(env, logging_dir=str(tmp_path / "old")), env) == tmp_path / "old"


def test_a_folder_inside_the_checkpoint_or_model_dir_is_refused(tmp_path: Path) -> None:
    env = environment(tmp_path)
    cfg = config(env, report_to="tensorboard", tensorboard_dir=str(tmp_path / "checkpoints" / "tb"))
    with pytest.raises(ConfigError, match=r"tensorboard_dir=.* is inside the checkpoint dir .*leave tensorboard_dir"):
        tracking.check(cfg, env)
    env = environment(tmp_path, TENSORBOARD_LOGGING_DIR=str(tmp_path / "model" / "tb"))
    with pytest.raises(ConfigError, match="TENSORBOARD_LOGGING_DIR=.* is inside the model dir"):
        tracking.tensorboard_dir(config(env), env)


def test_check_creates_the_folder_only_for_tensorboard(tmp_path: Path) -> None:
    env = environment(tmp_path)
    tracking.check(config(env), env)
    assert not (tmp_path / "output" / "tensorboard").exists()
    tracking.check(config(env, report_to="tensorboard"), env)
    assert (tmp_path / "output" / "tensorboard").is_dir()


@pytest.fixture
def no_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """sagemaker-mlflow not installed, whatever this environment has."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sagemaker_mlflow" else find_spec(name, *a)
    )


def test_a_managed_mlflow_arn_needs_the_plugin(no_plugin) -> None:
    with pytest.raises(ConfigError) as raised:
        mlflow_run.check_mlflow({"MLFLOW_TRACKING_URI": ARN})
    message = str(raised.value)
    assert f"MLFLOW_TRACKING_URI={ARN} (SageMaker managed MLflow) needs the sagemaker-mlflow package" in message
    assert "add sagemaker-mlflow to requirements.txt in source_dir" in message
    mlflow_run.check_mlflow({"MLFLOW_TRACKING_URI": "https://mlflow.example.com"})  # any other server needs none


def test_with_the_plugin_any_managed_arn_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    mlflow_run.check_mlflow({"MLFLOW_TRACKING_URI": ARN})
    mlflow_run.check_mlflow({"MLFLOW_TRACKING_URI": "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-app/app-ABC123"})


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ({"MLFLOW_TRACKING_URI": "arn:aws:s3:::my-bucket"}, "is not a SageMaker managed MLflow ARN"),
        ({"MLFLOW_TAGS": "team=nlp"}, r"MLFLOW_TAGS \(.*\) must hold a JSON object"),
        ({"MLFLOW_TAGS": '["nlp"]'}, r"MLFLOW_TAGS \(.*\) must hold a JSON object"),
    ],
)
def test_mlflow_variables_a_run_cannot_use_are_refused(variables: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        mlflow_run.check_mlflow(variables)


def test_parsing_refuses_the_arn_without_the_plugin(tmp_path: Path, no_plugin) -> None:
    """At parse time, before any data or model loads (validate.py); only for a job that reports to MLflow."""
    pytest.importorskip("mlflow")
    env = environment(tmp_path, MLFLOW_TRACKING_URI=ARN)
    config(env, report_to="tensorboard")
    with pytest.raises(ConfigError, match="needs the sagemaker-mlflow package"):
        config(env, report_to="mlflow")


@pytest.fixture
def trainer(tmp_path: Path, tiny_encoder: Path):
    """A real Trainer that reports to TensorBoard and MLflow, as Trainer builds the integrations' callbacks."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_encoder), num_labels=2)
    args = TrainingArguments(output_dir=str(tmp_path / "checkpoints"), report_to=["tensorboard", "mlflow"])
    return Trainer(model=model, args=args)


def kinds(trainer) -> set[str]:
    return {type(callback).__name__ for callback in trainer.callback_handler.callbacks}


def test_rank_0_gets_the_jobs_callbacks_instead_of_transformers(tmp_path: Path, trainer) -> None:
    env = environment(tmp_path)
    assert {"TensorBoardCallback", "MLflowCallback"} <= kinds(trainer)
    tracking.attach(trainer, config(env, report_to="tensorboard"), env)
    assert {"EventFiles", "MlflowRun"} <= kinds(trainer)
    assert not {"TensorBoardCallback", "MLflowCallback"} & kinds(trainer)
    assert list((tmp_path / "output" / "tensorboard").glob("events.out.tfevents.*"))


def test_other_ranks_log_nothing(tmp_path: Path, trainer, monkeypatch) -> None:
    env = environment(tmp_path)
    monkeypatch.setattr(trainer, "is_world_process_zero", lambda: False)
    tracking.attach(trainer, config(env, report_to="tensorboard"), env)
    assert not {"TensorBoardCallback", "MLflowCallback", "EventFiles", "MlflowRun"} & kinds(trainer)
    assert not (tmp_path / "output" / "tensorboard").exists()


def test_an_error_of_the_managed_mlflow_plugin_is_named_as_report_to_mlflow() -> None:
    from sm_train.reasons import failure_reason

    refused = type("AuthError", (Exception,), {"__module__": "sagemaker_mlflow.auth"})("AccessDeniedException")
    reason = failure_reason(refused)
    assert reason.startswith("report_to=mlflow failed (AuthError: AccessDeniedException).")
    assert "sagemaker-mlflow actions" in reason and "unexpected error" not in reason


@pytest.mark.parametrize(
    ("uri", "given", "allowed"),
    [
        ("file:/data/mlruns", None, "True"),  # a folder the job was pointed at: MLflow 3 refuses it unless opted in
        ("/data/mlruns", None, "True"),
        ("file:/data/mlruns", "false", "false"),  # the user's own answer stands
        ("https://mlflow.example.com", None, None),
        ("arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-ABC123", None, None),
        (None, None, None),
    ],
)
def test_a_file_store_is_opted_into_unless_refused(monkeypatch, uri, given, allowed) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # restored after the test
    if given is not None:
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", given)
    mlflow_run.allow_file_store_for(uri)
    assert os.environ.get("MLFLOW_ALLOW_FILE_STORE") == allowed
