"""metric-definitions, hyperparameters and every command's help where only Python is installed (a notebook with the
SageMaker SDK), from any directory. The SDK venvs run scripts/metric_definitions.py too: the README's blocks call it
(test_readme_examples.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sm_train.catalog import METRIC_NAMES
from sm_train.metrics import metric_definitions
from tests.jobs import REPO

pytestmark = pytest.mark.external  # another Python, in a venv of its own


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with nothing installed: no torch, transformers, datasets, numpy, not even pip."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    heavy = "('torch', 'transformers', 'datasets', 'numpy')"
    missing = f"import importlib.util as u; print([m for m in {heavy} if u.find_spec(m)])"
    assert subprocess.run([python, "-c", missing], capture_output=True, text=True).stdout.strip() == "[]"
    return python


def run(python: Path, argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("task", list(METRIC_NAMES))
def test_metric_definitions_script_from_another_directory(bare_python: Path, tmp_path: Path, task: str) -> None:
    done = run(bare_python, [str(REPO / "scripts" / "metric_definitions.py"), "--task", task], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == metric_definitions(METRIC_NAMES[task])


def test_both_commands_as_modules_with_the_repository_on_the_path(bare_python: Path, tmp_path: Path) -> None:
    done = run(bare_python, ["-m", "sm_train", "metric-definitions", "--task", "summarization"], tmp_path,
               PYTHONPATH=str(REPO))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == metric_definitions(METRIC_NAMES["summarization"])
    reference = subprocess.run(
        [sys.executable, "-m", "sm_train", "hyperparameters"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    done = run(bare_python, ["-m", "sm_train", "hyperparameters"], tmp_path, PYTHONPATH=str(REPO))
    assert done.returncode == 0, done.stderr
    assert done.stdout == reference  # the README's reference, printed without the full install


def test_a_wrong_task_fails_with_the_tasks_to_choose_from(bare_python: Path, tmp_path: Path) -> None:
    done = run(bare_python, [str(REPO / "scripts" / "metric_definitions.py"), "--task", "translation"], tmp_path)
    assert done.returncode == 2 and not done.stdout
    assert "Unknown task 'translation'. Supported tasks: text-classification, question-answering" in done.stderr


def test_help_of_every_command_with_only_python(bare_python: Path, tmp_path: Path) -> None:
    """Help needs no torch, transformers or datasets, starts nothing and writes nothing (run from a fresh HOME)."""
    from sm_train.usage import SUMMARIES

    opt_ml = Path("/opt/ml").exists()
    listed = run(bare_python, ["-m", "sm_train", "--help"], tmp_path, PYTHONPATH=str(REPO), HOME=str(tmp_path))
    assert listed.returncode == 0 and not listed.stderr, listed.stderr
    assert all(f"  {command} " in listed.stdout for command in SUMMARIES)
    for command in SUMMARIES:
        done = run(bare_python, ["-m", "sm_train", command, "-h"], tmp_path, PYTHONPATH=str(REPO), HOME=str(tmp_path))
        assert done.returncode == 0 and not done.stderr, (command, done.stderr)
        assert done.stdout.startswith(f"usage: python -m sm_train {command}")
    assert not list(tmp_path.iterdir()) and Path("/opt/ml").exists() is opt_ml


@pytest.mark.skipif(Path("/opt/ml/input/config").is_dir(), reason="this machine is a SageMaker job tree")
def test_train_outside_a_job_tree_with_only_python(bare_python: Path, tmp_path: Path) -> None:
    """One line and exit code 2 before anything heavy is imported; no /opt/ml/output/failure on a user's machine."""
    opt_ml = Path("/opt/ml").exists()
    done = run(bare_python, ["-m", "sm_train", "train"], tmp_path, PYTHONPATH=str(REPO), HOME=str(tmp_path))
    assert done.returncode == 2 and not done.stdout
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("sm_train train: not inside a SageMaker job")
    assert not list(tmp_path.iterdir()) and Path("/opt/ml").exists() is opt_ml
