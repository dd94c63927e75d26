"""cli.py: the helper commands (metric-definitions, hyperparameters) and the failure file of the train command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sm_train import cli, runner
from sm_train.metrics import metric_definitions
from sm_train.tasks import TASKS
from tests.jobs import REPO, make_tree


def test_metric_definitions_command(capsys) -> None:
    assert cli.main(["metric-definitions", "--task", "text-classification"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == metric_definitions(TASKS["text-classification"].metric_names)
    assert {"eval_accuracy", "eval_f1", "eval_loss", "train_runtime", "learning_rate"} <= {d["Name"] for d in printed}


def test_metric_definitions_command_as_the_readme_runs_it() -> None:
    """`python -m sm_train metric-definitions --task T` prints T's definitions (it printed text classification's
    for every task)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    commands = {
        task: subprocess.Popen(
            [sys.executable, "-m", "sm_train", "metric-definitions", "--task", task],
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for task in TASKS
    }
    for task, command in commands.items():
        out, err = command.communicate(timeout=120)
        assert command.returncode == 0, err
        assert json.loads(out) == metric_definitions(TASKS[task].metric_names), task
    assert len({json.dumps(metric_definitions(t.metric_names)) for t in TASKS.values()}) == len(TASKS)


def test_hyperparameters_command_prints_the_asked_task_only(capsys) -> None:
    assert cli.main(["hyperparameters", "--task", "summarization"]) == 0
    out = capsys.readouterr().out
    assert "#### task=summarization" in out and "#### task=text-classification" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tsk", "summarization"], "metric-definitions takes only --task <task>; got --tsk."),
        (["--task"], "metric-definitions: --task takes one task name"),
        (["--task", "translation"], "Unknown task 'translation'"),
    ],
)
def test_metric_definitions_command_refuses_what_it_cannot_honour(capsys, argv, message) -> None:
    """A misspelled option used to print text classification's definitions without a word."""
    assert cli.main(["metric-definitions", *argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and not captured.out


def test_a_token_in_the_environment_never_reaches_the_failure_file(tmp_path: Path, monkeypatch) -> None:
    job = make_tree(tmp_path, {"model_name_or_path": "org/model"})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefgh12345")

    def leaky(cfg, env) -> None:  # noqa: ANN001
        raise RuntimeError("request with hf_abcdefgh12345 failed")

    monkeypatch.setattr(runner, "run", leaky)
    assert cli.main(["train"]) == 1
    assert "hf_abcdefgh12345" not in job.failure and "request with *** failed" in job.failure
