"""report_to=mlflow in whole jobs, on a local MLflow file store: one run per job with the resolved settings and the
final evaluation's and test set's metrics, continued by a later job or a restarted (killed) attempt; artifacts only
when asked; SageMaker's managed MLflow without its plugin refused before any data or model loads."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sm_train import cli
from tests.e2e.test_restarts import new_attempt
from tests.e2e.test_tracking import (
    HPS,
    assert_mlflow_logged,
    assert_tensorboard_logged,
    data,
    history,
    mlflow_store,
    run,
    runs,
)
from tests.jobs import REPO, Job, assert_fails, job_env, make_tree


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The job's tracking server, a local MLflow file store, and a client reading it."""
    return mlflow_store(tmp_path, monkeypatch)


def test_mlflow_logs_one_run_with_the_final_evaluation(tmp_path, monkeypatch, tiny_encoder, store) -> None:
    monkeypatch.setenv("TRAINING_JOB_NAME", "reviews-2026")
    hps = {"model_name_or_path": str(tiny_encoder), "report_to": "mlflow", "hub_token": "hf_secret_value"}
    job = run(tmp_path, monkeypatch, hps)
    assert job.returncode == 0, job.failure
    (found,) = runs(store)
    assert found.info.status == "FINISHED" and found.info.run_name == "reviews-2026"
    assert found.data.tags["sagemaker.job_name"] == "reviews-2026"
    params = found.data.params
    assert params["learning_rate"] == "5e-05" and params["task"] == "text-classification"
    assert params["hub_token"] == "***" and "hf_secret_value" not in json.dumps(params)
    assert_mlflow_logged(store, job)
    assert store.list_artifacts(found.info.run_id) == []  # artifacts only when asked


@pytest.mark.parametrize("report_to", [["tensorboard", "mlflow"], "tensorboard,mlflow"])
def test_one_job_reports_to_tensorboard_and_mlflow(tmp_path, monkeypatch, tiny_encoder, store, report_to) -> None:
    pytest.importorskip("tensorboard")
    job = run(tmp_path, monkeypatch, {"model_name_or_path": str(tiny_encoder), "report_to": report_to})
    assert job.returncode == 0, job.failure
    assert_tensorboard_logged(job, job.root / "output" / "tensorboard")
    (found,) = runs(store)
    assert found.info.status == "FINISHED"
    assert_mlflow_logged(store, job)


def test_a_file_store_needs_no_opt_in_from_the_user(tmp_path, monkeypatch, tiny_encoder, store) -> None:
    """MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE is set: a job pointed at one opts in itself (the
    test's own client reads the store after the job, in this process)."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")  # restored after the test, whatever the job set
    job = run(tmp_path, monkeypatch, {"model_name_or_path": str(tiny_encoder), "report_to": "mlflow"})
    assert job.returncode == 0, job.failure
    assert_mlflow_logged(store, job)


def test_hf_mlflow_log_artifacts_logs_the_final_model(tmp_path, monkeypatch, tiny_encoder, store) -> None:
    monkeypatch.setenv("HF_MLFLOW_LOG_ARTIFACTS", "true")
    job = run(tmp_path, monkeypatch, {"model_name_or_path": str(tiny_encoder), "report_to": "mlflow"})
    assert job.returncode == 0, job.failure
    (found,) = runs(store)
    logged = {Path(a.path).name for a in store.list_artifacts(found.info.run_id, "model")}
    assert {"model.safetensors", "config.json"} <= logged and "code" in logged


def test_a_job_resuming_the_run_continues_it_and_resume_never_starts_another(
    tmp_path, monkeypatch, capsys, tiny_encoder, store
) -> None:
    """A later job that extends the run (max_steps raised, logging_steps changed: parameters MLflow keeps as first
    logged) logs into its MLflow run; a job that starts afresh on the same checkpoint dir gets a run of its own."""
    hps = {"model_name_or_path": str(tiny_encoder), "report_to": "mlflow", "max_steps": 2}
    monkeypatch.setenv("TRAINING_JOB_NAME", "first-job")
    job = run(tmp_path, monkeypatch, hps)
    assert job.returncode == 0, job.failure
    monkeypatch.setenv("TRAINING_JOB_NAME", "second-job")
    new_attempt(job)
    job = run(tmp_path, monkeypatch, {**hps, "max_steps": 3, "logging_steps": 2})
    assert job.returncode == 0, job.failure
    (found,) = runs(store)
    assert [step for step, _ in history(store, found, "train_loss")] == [2, 3]  # each job's training summary
    assert found.data.params["max_steps"] == "2" and float(found.data.params["logging_steps"]) == 1
    assert "MLflow keeps the run's first logging_steps, max_steps" in capsys.readouterr().err
    assert found.data.tags["sm_train.resumed_from"].endswith("checkpoint-2")
    monkeypatch.setenv("TRAINING_JOB_NAME", "third-job")
    new_attempt(job)
    assert run(tmp_path, monkeypatch, {**hps, "resume": "never"}).returncode == 0
    assert len(runs(store)) == 2


def start(job: Job, variables: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sm_train", "train"], env=job_env(job.root) | variables, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


@pytest.mark.external  # jobs in other processes
@pytest.mark.slow
def test_a_killed_and_resumed_job_logs_one_run(tmp_path: Path, tiny_encoder: Path, store) -> None:
    from tests.e2e.test_resume import wait_for_training

    variables = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    variables["TRAINING_JOB_NAME"] = "reviews-spot"
    hps = {**HPS, "model_name_or_path": str(tiny_encoder), "report_to": "mlflow", "max_steps": 200, "save_steps": 3}
    job = make_tree(tmp_path, hps, data(tmp_path))
    process = start(job, variables)
    wait_for_training(process, job.root / "checkpoints")
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    (killed,) = runs(store)
    assert killed.info.status == "KILLED"
    stopped_at = max(step for step, _ in history(store, killed, "loss"))
    assert 0 < stopped_at < 200

    new_attempt(job)
    process = start(job, variables)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    assert "MLflow: continuing run" in output
    (found,) = runs(store)
    assert found.info.run_id == killed.info.run_id and found.info.status == "FINISHED"
    steps = [step for step, _ in history(store, found, "loss")]
    assert steps[0] == 1 and steps[-1] == 200 and stopped_at in steps  # both attempts' steps
    assert [step for step, _ in history(store, found, "eval_accuracy")] == [200]


def test_managed_mlflow_without_its_plugin_fails_at_start(tmp_path, monkeypatch, capsys, store) -> None:
    """Before any data or model loads: here the model does not exist and the train channel is empty, and the failure
    names the plugin alone."""
    if importlib.util.find_spec("sagemaker_mlflow") is not None:
        pytest.skip("sagemaker-mlflow is installed here")
    arn = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/my-server"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", arn)
    (tmp_path / "empty").mkdir()
    hps = {"model_name_or_path": str(tmp_path / "no-model"), "report_to": "mlflow"}
    job = make_tree(tmp_path, hps, {"train": tmp_path / "empty"})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    job.returncode = cli.main(["train"])
    job.stdout, job.stderr = capsys.readouterr()
    assert_fails(job, rf"report_to=mlflow with MLFLOW_TRACKING_URI={arn} \(SageMaker managed MLflow\) needs the ")
    assert "add sagemaker-mlflow to requirements.txt in source_dir" in job.failure
    assert job.returncode == 1
