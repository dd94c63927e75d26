"""cli.py: help, the helper commands (metric-definitions, hyperparameters), train outside a job tree, and the failure
file of the train command."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sm_train import cli, runner, usage
from sm_train import env as sm_env
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

    def leaky(cfg, env, hardware) -> None:  # noqa: ANN001
        raise RuntimeError("request with hf_abcdefgh12345 failed")

    monkeypatch.setattr(runner, "run", leaky)
    assert cli.main(["train"]) == 1
    assert "hf_abcdefgh12345" not in job.failure and "request with *** failed" in job.failure


# --- help, and train outside a job tree -------------------------------------------------------------------------

OPTIONS = {  # what each command's usage must name
    "train": ("--name value", "--name=value", "SAGEMAKER_BASE_DIR"),
    "local": ("--channel NAME=PATH", "--root DIR", "--checkpoints DIR", "-- --name value"),
    "check": ("--channel NAME=PATH", "--root DIR", "--checkpoints DIR", "-- --name value"),
    "hyperparameters": ("--task TASK",),
    "metric-definitions": ("--task TASK",),
}
OPT_ML_BEFORE = Path("/opt/ml").exists()  # no test may create it


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's shell outside SageMaker: cwd and HOME in tmp_path, no /opt/ml tree (its root moved to a path that
    does not exist), and every command's own code replaced so that anything but help fails the test."""
    for name in ("cwd", "home"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sm_env, "DEFAULT_ROOT", str(tmp_path / "no-opt-ml"))
    for name in cli.COMMANDS:
        monkeypatch.setitem(cli.COMMANDS, name, lambda argv, name=name: pytest.fail(f"{name} ran"))
    return tmp_path


def written(tmp_path: Path) -> list[Path]:
    return sorted(p for p in tmp_path.rglob("*") if p.name not in ("cwd", "home"))


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["help"], []])
def test_help_lists_every_command_and_writes_nothing(outside: Path, capsys, argv: list[str]) -> None:
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    for name, summary in usage.SUMMARIES.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(summary)}$", out, flags=re.MULTILINE)
    assert set(usage.SUMMARIES) == set(cli.COMMANDS)
    assert "python -m sm_train COMMAND --help" in out and "python -m sm_train hyperparameters" in out
    assert not written(outside) and Path("/opt/ml").exists() is OPT_ML_BEFORE


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("command", list(OPTIONS))
def test_each_command_prints_its_usage_and_writes_nothing(outside: Path, capsys, command: str, flag: str) -> None:
    assert cli.main([command, flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m sm_train {command}") and "example" in out
    assert all(option in out for option in OPTIONS[command]), out
    if command in ("train", "local", "check"):
        assert "python -m sm_train hyperparameters [--task TASK]" in out  # the hyperparameter reference
    assert cli.main(["help", command]) == 0 and capsys.readouterr().out == out
    assert not written(outside) and Path("/opt/ml").exists() is OPT_ML_BEFORE


def test_help_inside_a_job_tree_too(outside: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(outside / "cwd"))
    assert cli.main(["--help"]) == 0 and cli.main(["local", "--root", "x", "-h"]) == 0
    monkeypatch.setitem(cli.COMMANDS, "train", lambda argv: 7)
    assert cli.main([]) == 7  # no arguments in a job tree: the job (a container's default command)
    assert cli.main(["help", "bogus"]) == 2
    assert "Unknown command 'bogus'; the commands: train, " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "args", "asks"),
    [
        ("train", ["--help"], True),
        ("train", ["-h", "--epochs", "1"], True),
        ("train", ["--hub_model_id", "-h"], False),  # a value
        ("train", ["--epochs", "1", "--help"], False),
        ("local", ["--channel", "train=d", "--help"], True),
        ("check", ["-h", "--", "--epochs", "1"], True),
        ("local", ["--root", "d", "--", "--hub_model_id", "-h"], False),  # after --: the job's hyperparameters
        ("check", ["--", "--help"], False),
        ("hyperparameters", ["--task", "summarization", "--help"], True),
        ("metric-definitions", ["--task", "summarization"], False),
    ],
)
def test_only_help_before_the_hyperparameters_counts(command: str, args: list[str], asks: bool) -> None:
    assert usage.asks_help(command, args) is asks


def test_a_value_of_minus_h_still_reaches_its_field(tmp_path: Path, monkeypatch) -> None:
    """The toolkit passes hyperparameters.json as argv too (--hub_model_id -h ...): a job, not help."""
    seen = []
    monkeypatch.setattr(runner, "run", lambda cfg, env, hardware: seen.append(cfg.training_args.hub_model_id))
    job = make_tree(tmp_path / "job", {"model_name_or_path": "m", "hub_model_id": "-h"})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    assert cli.main(["--hub_model_id", "-h", "--model_name_or_path", "m"]) == 0
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "ml"))  # no hyperparameters.json: argv is the source
    assert cli.main(["train", "--model_name_or_path", "m", "--hub_model_id=-h"]) == 0
    assert seen == ["-h", "-h"]


@pytest.mark.parametrize("argv", [["train"], ["train", "--model_name_or_path", "m"], ["--model_name_or_path", "m"]])
def test_train_outside_a_job_tree_says_how_to_run_locally_and_creates_nothing(
    outside, monkeypatch, capsys, argv
) -> None:
    monkeypatch.setattr(cli, "setup_logging", lambda: pytest.fail("the job started"))
    monkeypatch.setitem(cli.COMMANDS, "train", cli.train)  # the real command: it stops before anything runs
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert not captured.out and captured.err.count("\n") == 1
    assert captured.err.startswith(f"sm_train train: not inside a SageMaker job ({outside}/no-opt-ml/input/config")
    assert "python -m sm_train local --channel train=DIR -- --model_name_or_path MODEL" in captured.err
    assert "python -m sm_train check" in captured.err
    assert not written(outside) and Path("/opt/ml").exists() is OPT_ML_BEFORE


@pytest.mark.parametrize(
    ("variables", "inside"),
    [
        ({}, False),
        ({"SAGEMAKER_BASE_DIR": "/does/not/exist"}, True),  # a tree of the user's own, made by the job
        ({"SM_TRAINING_ENV": "{}"}, True),  # under SageMaker's training toolkit
        ({"RANK": "1", "WORLD_SIZE": "2"}, True),  # under torchrun
        ({"OMPI_COMM_WORLD_RANK": "1"}, True),  # under mpirun
    ],
)
def test_inside_a_job(tmp_path: Path, monkeypatch, variables: dict[str, str], inside: bool) -> None:
    monkeypatch.setattr(sm_env, "DEFAULT_ROOT", str(tmp_path / "ml"))
    config = tmp_path / "ml" / "input" / "config"
    assert cli.inside_job(variables) is inside
    config.mkdir(parents=True)  # as SageMaker makes /opt/ml
    assert cli.inside_job(variables)
    # The config dir is where env.py reads it: SM_INPUT_CONFIG_DIR's when that is set.
    assert cli.inside_job({"SM_INPUT_CONFIG_DIR": str(config)})
    assert not cli.inside_job({"SM_INPUT_CONFIG_DIR": str(tmp_path / "elsewhere")})


@pytest.mark.skipif(Path("/opt/ml/input/config").is_dir(), reason="this machine is a SageMaker job tree")
def test_help_and_train_as_a_user_types_them(tmp_path: Path) -> None:
    """The real process, from a home folder: help exits 0, train outside a job exits 2; neither writes anything."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    environment |= {"HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    for argv, code in (([], 0), (["--help"], 0), (["check", "--help"], 0), (["train"], 2)):
        done = subprocess.run([sys.executable, "-m", "sm_train", *argv], cwd=tmp_path, env=environment,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == code, (argv, done.stderr)
        assert (done.stdout if code == 0 else done.stderr).count("python -m sm_train") >= 1
        assert "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir()) and Path("/opt/ml").exists() is OPT_ML_BEFORE
