"""A hyperparameter tuning trial: SageMaker's tuner names its objective in the trial's hyperparameters
(_tuning_objective_metric) and reads it from the log with the job's metric definitions, at every evaluation (its early
stopping judges the values as they come)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from sm_train import cli
from tests import tiny
from tests.jobs import REPO, make_tree, write_rows

ROWS = [{"text": t, "label": label} for t, label in tiny.sentences(32)]


def definitions(task: str) -> dict[str, str]:
    """What the README's tuning examples pass as metric definitions: scripts/metric_definitions.py's output."""
    printed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "metric_definitions.py"), "--task", task],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {d["Name"]: d["Regex"] for d in json.loads(printed)}


def read_as_the_tuner(log: str, regex: str) -> list[float]:
    """SageMaker applies a metric definition's regex to each log line and takes its first group."""
    return [float(found[1]) for line in log.splitlines() if (found := re.search(regex, line))]


def test_a_trials_log_gives_the_objective_at_every_evaluation(tmp_path: Path, monkeypatch, capsys, tiny_encoder):
    data = {
        "train": write_rows(tmp_path / "data" / "train" / "train.jsonl", ROWS[:24]).parent,
        "validation": write_rows(tmp_path / "data" / "validation" / "validation.jsonl", ROWS[24:]).parent,
    }
    hps = {"model_name_or_path": str(tiny_encoder), "epochs": 3, "train_batch_size": 8, "learning_rate": 1e-3}
    job = make_tree(tmp_path, hps, data, extra={"_tuning_objective_metric": "eval_accuracy"})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    assert cli.main(["train"]) == 0, job.failure
    log = capsys.readouterr().out
    values = read_as_the_tuner(log, definitions("text-classification")["eval_accuracy"])
    assert len(values) == 3  # one evaluation per epoch, though the trial set no eval_strategy
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values[-1] == json.loads((job.model_dir / "eval_results.json").read_text())["eval_accuracy"]
    resolved = json.loads((job.output_data_dir / "sm_train_config.json").read_text())
    assert resolved["environment"]["tuning_objective"] == "eval_accuracy"
    assert resolved["training_args"]["metric_for_best_model"] == "accuracy"


def test_a_trial_without_evaluation_data_fails_naming_its_objective(tmp_path: Path, monkeypatch, tiny_encoder):
    data = {"train": write_rows(tmp_path / "data" / "train" / "train.jsonl", ROWS).parent}
    hps = {"model_name_or_path": str(tiny_encoder), "epochs": 1}
    job = make_tree(tmp_path, hps, data, extra={"_tuning_objective_metric": "eval_accuracy"})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    assert cli.main(["train"]) != 0
    assert job.failure.startswith("The tuning objective eval_accuracy (evaluated every epoch) needs evaluation data")
    assert not list(job.model_dir.iterdir())
