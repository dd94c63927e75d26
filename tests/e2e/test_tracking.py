"""report_to=tensorboard in whole jobs: event files in /opt/ml/output/tensorboard (never the checkpoint dir), read
back, with the final evaluation's and the test set's metrics; transformers 4.57 and two processes log as one process on
transformers 5 does, for TensorBoard and MLflow alike (the MLflow jobs themselves: test_mlflow.py, with the helpers
here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sm_train import cli
from tests import tiny
from tests.e2e.conftest import TF4_PYTHON, tf4_encoder, tf4_job
from tests.jobs import Job, make_tree, write_rows

ROWS = [{"text": t, "label": label} for t, label in tiny.sentences(32)]
# The final evaluation runs after on_train_end (no evaluation during training), then the test set.
HPS = {"epochs": 1, "train_batch_size": 8, "per_device_eval_batch_size": 8, "logging_steps": 1, "save_steps": 2}


def data(base: Path) -> dict[str, Path]:
    splits = {"train": ROWS[:24], "validation": ROWS[24:], "test": ROWS[24:]}
    return {name: write_rows(base / "data" / name / f"{name}.jsonl", rows).parent for name, rows in splits.items()}


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hps: dict[str, Any]) -> Job:
    job = make_tree(tmp_path, {**HPS, **hps}, data(tmp_path))
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    job.returncode = cli.main(["train"])
    return job


def event_files(root: Path) -> list[Path]:
    return sorted(root.rglob("events.out.tfevents.*"))


def scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the folder's event files, by tag: (step, value) in order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def assert_tensorboard_logged(job: Job, directory: Path) -> None:
    """One event file, in `directory` alone, with the training loss at every step and the final evaluation's and the
    test set's metrics at the last step (logged after training ended)."""
    assert event_files(job.root.parent) == event_files(directory) and len(event_files(directory)) == 1
    found = scalars(directory)
    last = 3  # 24 training rows in batches of 8
    assert [step for step, _ in found["train/loss"]] == [1, 2, last]
    evaluation = json.loads((job.model_dir / "eval_results.json").read_text())
    assert found["eval/accuracy"] == [(last, pytest.approx(evaluation["eval_accuracy"]))]
    assert found["eval/loss"] == [(last, pytest.approx(evaluation["eval_loss"]))]
    assert found["test/accuracy"] == [(last, pytest.approx(job.results("test_results.json")["test_accuracy"]))]


def test_tensorboard_event_files_on_transformers_5(tmp_path, monkeypatch, tiny_encoder) -> None:
    pytest.importorskip("tensorboard")
    job = run(tmp_path, monkeypatch, {"model_name_or_path": str(tiny_encoder), "report_to": "tensorboard"})
    assert job.returncode == 0, job.failure
    assert_tensorboard_logged(job, job.root / "output" / "tensorboard")
    assert not event_files(job.root / "checkpoints") and not event_files(job.model_dir)


def test_logging_dir_places_an_evaluation_only_jobs_files(tmp_path, monkeypatch, tiny_encoder) -> None:
    """No training, so no on_train_begin: the writer is the job's from the start; logging_dir names the folder."""
    pytest.importorskip("tensorboard")
    hps = {"model_name_or_path": str(tiny_encoder), "report_to": "tensorboard", "do_train": False}
    job = run(tmp_path, monkeypatch, {**hps, "logging_dir": str(tmp_path / "tb")})
    assert job.returncode == 0, job.failure
    assert event_files(tmp_path) == event_files(tmp_path / "tb")
    found = scalars(tmp_path / "tb")
    assert "eval/accuracy" in found and "test/accuracy" in found and "train/loss" not in found


@pytest.mark.external  # a job in the transformers 4.x venv
@pytest.mark.parametrize("report_to", ["tensorboard", "mlflow"])
def test_the_same_on_transformers_4(tmp_path: Path, monkeypatch, report_to: str) -> None:
    pytest.importorskip(report_to)  # to read what the job wrote
    if subprocess.run([str(TF4_PYTHON), "-c", f"import {report_to}"], capture_output=True).returncode:
        pytest.skip(f"{TF4_PYTHON} has no {report_to} package")
    store = mlflow_store(tmp_path, monkeypatch) if report_to == "mlflow" else None
    hps = {**HPS, "model_name_or_path": str(tf4_encoder(tmp_path / "enc")), "report_to": report_to}
    job = make_tree(tmp_path, hps, data(tmp_path))
    tf4_job(job)
    if store is None:
        assert_tensorboard_logged(job, job.root / "output" / "tensorboard")
        assert not event_files(job.root / "checkpoints")
    else:
        assert_mlflow_logged(store, job)


def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A local MLflow file store as the job's tracking server (the variables a job reads), and a client reading it."""
    mlflow = pytest.importorskip("mlflow")
    variables = {
        "MLFLOW_TRACKING_URI": f"file:{tmp_path / 'mlruns'}",
        "MLFLOW_ALLOW_FILE_STORE": "true",  # MLflow 3 keeps the file store only on request
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_EXPERIMENT_NAME": "reviews",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return mlflow.MlflowClient(variables["MLFLOW_TRACKING_URI"])


def runs(client: Any) -> list[Any]:
    experiment = client.get_experiment_by_name("reviews")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def history(client: Any, run: Any, metric: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, metric))


def assert_mlflow_logged(client: Any, job: Job) -> None:
    """One finished run: the loss at every step, the final evaluation's and the test set's metrics at the last step
    (logged after training ended, where transformers' callback ends its run)."""
    (found,) = runs(client)
    assert found.info.status == "FINISHED"
    assert [step for step, _ in history(client, found, "loss")] == [1, 2, 3]
    evaluation = json.loads((job.model_dir / "eval_results.json").read_text())
    assert history(client, found, "eval_accuracy") == [(3, pytest.approx(evaluation["eval_accuracy"]))]
    test = job.results("test_results.json")
    assert history(client, found, "test_accuracy") == [(3, pytest.approx(test["test_accuracy"]))]


@pytest.mark.external  # two processes of one job (Open MPI's variables, as tests/e2e/test_distributed.py)
@pytest.mark.slow
@pytest.mark.parametrize("report_to", ["tensorboard", "mlflow"])
def test_rank_0_alone_writes(tmp_path: Path, monkeypatch, tiny_encoder: Path, report_to: str) -> None:
    pytest.importorskip(report_to)
    store = mlflow_store(tmp_path, monkeypatch) if report_to == "mlflow" else None
    from tests.e2e.test_distributed import finish, mpi_ranks

    hps = {**HPS, "model_name_or_path": str(tiny_encoder), "report_to": report_to, "train_batch_size": 4}
    job = make_tree(tmp_path, hps, data(tmp_path))
    for rank in mpi_ranks(job, sys.executable):
        finish(rank, Job(job.root))
    if report_to == "tensorboard":
        assert_tensorboard_logged(job, job.root / "output" / "tensorboard")  # one file, each step once
    else:
        (found,) = runs(store)
        assert [step for step, _ in history(store, found, "loss")] == [1, 2, 3]
