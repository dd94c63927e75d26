"""The container entry: `python -m sm_train train` on an /opt/ml tree with no toolkit (what docker/Dockerfile runs),
script mode's hand-over to the toolkit, and docker/run_local.sh up to `docker run` itself (no Docker engine here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import tiny
from tests.jobs import REPO, assert_fails, make_tree, run_module, toolkit_env, write_rows

DOCKER = REPO / "docker"
CONTAINER_ARGV = ["train"]  # what SageMaker passes to the image, and what run_module passes to `python -m sm_train`
ROWS = [{"text": t, "label": label} for t, label in tiny.sentences(24)]


def instruction(name: str) -> list[str]:
    found = re.findall(rf"^{name} (\[.*\])$", (DOCKER / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert len(found) == 1, f"one exec-form {name} in docker/Dockerfile"
    return json.loads(found[0])


def test_the_image_runs_the_command_the_container_tests_run() -> None:
    """Exec form (Python is PID 1's process, signals reach it): python -m sm_train, train by default."""
    entry, command = instruction("ENTRYPOINT"), instruction("CMD")
    assert entry == ["python", "-m", "sm_train"] and command == CONTAINER_ARGV
    text = (DOCKER / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE=(\S+)$", text, flags=re.MULTILINE)[1]
    assert base.startswith("763104351884.dkr.ecr.") and "/huggingface-pytorch-training:" in base
    installs = " ".join(line for line in text.splitlines() if line.startswith("RUN"))
    assert "pip install" in installs and "--force-reinstall" not in installs and "torch==" not in installs


def tree(tmp_path: Path, encoder: Path, **hps) -> object:
    write_rows(tmp_path / "data" / "train.csv", ROWS)
    return make_tree(
        tmp_path, {"model_name_or_path": str(encoder), "max_steps": 3, **hps}, {"train": tmp_path / "data"}
    )


@pytest.mark.external
def test_the_container_entry_trains_on_the_tree_alone(tmp_path, tiny_encoder) -> None:
    job = run_module(tree(tmp_path, tiny_encoder), CONTAINER_ARGV)
    assert job.returncode == 0, job.log[-3000:]
    assert (job.model_dir / "model.safetensors").is_file() and "[metric] train_loss = " in job.stdout
    assert job.failure is None


@pytest.mark.external
def test_the_container_entry_writes_the_failure_file(tmp_path, tiny_encoder) -> None:
    job = run_module(tree(tmp_path, tiny_encoder, text_column="review"), CONTAINER_ARGV)
    assert_fails(job, r"text_column='review': no such column in the train data")


@pytest.mark.external
def test_script_mode_in_the_image_hands_over_to_the_toolkit(tmp_path, tiny_encoder, source) -> None:
    """An estimator with entry_point and sm_train's image: the toolkit fetches source_dir and runs scripts/train.py."""
    write_rows(tmp_path / "data" / "train.csv", ROWS)
    job = make_tree(tmp_path, {"model_name_or_path": str(tiny_encoder), "max_steps": 3}, {"train": tmp_path / "data"},
                    source=source)  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "sm_train", *CONTAINER_ARGV], env=toolkit_env(job.root), cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "script mode (sagemaker_program=scripts/train.py): SageMaker's training toolkit runs it" in log
    assert "Invoking user script" in log and (job.model_dir / "model.safetensors").is_file()


def run_script(tmp_path: Path, *argv: str, **environ: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """docker/run_local.sh with a stand-in docker that records its arguments, one per line."""
    recorder = tmp_path / "docker"
    recorder.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "args"}\n')
    recorder.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"} | {"DOCKER": str(recorder), **environ}
    done = subprocess.run(["bash", str(DOCKER / "run_local.sh"), *argv], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)  # fmt: skip
    args = (tmp_path / "args").read_text().splitlines() if (tmp_path / "args").exists() else []
    return done, args


def test_run_local_builds_the_tree_and_the_docker_command(tmp_path) -> None:
    (tmp_path / "my data" / "train").mkdir(parents=True)
    root = tmp_path / "tree"
    (root / "output").mkdir(parents=True)
    (root / "output" / "failure").write_text("an earlier run's")
    done, args = run_script(
        tmp_path, "--root", "tree", "--gpus", "--image", "me/sm-train:1", "--channel", "train=my data/train",
        "--", "--model_name_or_path", 'bert "x"', "--learning_rate", "5e-5", "--fp16", "--epochs=2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    user = f"{os.getuid()}:{os.getgid()}"
    assert args == [
        "run", "--rm", "--shm-size", "2g", "-e", "TRAINING_JOB_NAME=local-tree", "--user", user, "-e", "HOME=/tmp",
        "--gpus", "all", "-v", f"{root}:/opt/ml",
        "-v", f"{tmp_path / 'my data' / 'train'}:/opt/ml/input/data/train:ro",
        "me/sm-train:1", "train",
    ]  # fmt: skip
    config = root / "input" / "config"
    hps = json.loads((config / "hyperparameters.json").read_text())
    assert hps == {"model_name_or_path": 'bert "x"', "learning_rate": "5e-5", "fp16": "true", "epochs": "2"}
    assert json.loads((config / "inputdataconfig.json").read_text())["train"]["TrainingInputMode"] == "File"
    assert json.loads((config / "checkpointconfig.json").read_text()) == {"LocalPath": "/opt/ml/checkpoints"}
    assert json.loads((config / "resourceconfig.json").read_text())["hosts"] == ["algo-1"]
    assert (root / "input" / "data" / "train").is_dir() and (root / "checkpoints").is_dir()
    assert not (root / "output" / "failure").exists() and (root / "output" / "data").is_dir()
    assert f"model: {root}/model" in done.stderr


def test_run_local_check_without_gpus_as_the_image_user(tmp_path) -> None:
    (tmp_path / "ck").mkdir()
    done, args = run_script(tmp_path, "--check", "--checkpoints", "ck", "--", "--epochs", "1", DOCKER_USER="",
                            HF_TOKEN="hf_x")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert args[-2:] == ["sm-train", "check"] and "--gpus" not in args and "--user" not in args
    assert f"{tmp_path / 'ck'}:/opt/ml/checkpoints" in args and "HF_TOKEN" in args  # the token's name, not its value
    root = next((tmp_path / ".sm_train").iterdir())
    assert json.loads((root / "input" / "config" / "hyperparameters.json").read_text()) == {"epochs": "1"}


@pytest.mark.parametrize(
    ("argv", "says"),
    [(["--channel", "train"], "--channel takes NAME=PATH"), (["--channel", "t=/no/such"], "does not exist"),
     (["--epochs", "1"], "hyperparameters go after --"), (["--", "--a", "b", "c"], "unexpected c")],
)  # fmt: skip
def test_run_local_refuses_what_it_cannot_do(tmp_path, argv, says) -> None:
    done, args = run_script(tmp_path, *argv)
    assert done.returncode == 2 and says in done.stderr and not args


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install shellcheck)"
)
def test_run_local_is_shellcheck_clean() -> None:
    done = subprocess.run(["shellcheck", str(DOCKER / "run_local.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
