"""`python -m sm_train local`: a job on plain folders in an /opt/ml tree, and a re-run on the same tree resumes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from sm_train import cli, local
from tests import tiny
from tests.jobs import REPO, write_rows

ROWS = [{"text": t, "label": label} for t, label in tiny.sentences(32)]
HPS = ["--save_steps", "2", "--train_batch_size", "8", "--eval_strategy", "no"]


def folders(tmp_path: Path) -> list[str]:
    write_rows(tmp_path / "data" / "train" / "part-0.csv", ROWS)
    write_rows(tmp_path / "data" / "val.jsonl", ROWS[:8])  # a file as a channel
    return [
        "--channel",
        f"train={tmp_path / 'data' / 'train'}",
        "--channel",
        f"validation={tmp_path / 'data' / 'val.jsonl'}",
    ]


def test_local_runs_the_job_and_a_second_run_resumes(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    """In-process: the child (`python -m sm_train train` on the tree) is run here as cli.main(["train"])."""
    commands = []

    def in_process(command: list[str], environ: Mapping[str, str]) -> int:
        commands.append(command)
        monkeypatch.setenv("SAGEMAKER_BASE_DIR", environ["SAGEMAKER_BASE_DIR"])
        monkeypatch.setenv("TRAINING_JOB_NAME", environ["TRAINING_JOB_NAME"])
        return cli.main(command[3:])

    monkeypatch.setattr(local, "run_child", in_process)
    monkeypatch.chdir(tmp_path)
    argv = [*folders(tmp_path), "--", "--model_name_or_path", str(tiny_encoder), *HPS, "--max_steps", "4"]
    assert cli.main(["local", *argv]) == 0
    assert commands == [[sys.executable, "-m", "sm_train", "train"]]
    root = next((tmp_path / ".sm_train").iterdir())  # the default tree: ./.sm_train/<timestamp>
    out = capsys.readouterr().out
    assert f"the job finished in {root}" in out and f"checkpoints: {root / 'checkpoints'}" in out
    assert f"python -m sm_train local --root {root}" in out
    assert (root / "model" / "model.safetensors").is_file() and (root / "checkpoints" / "checkpoint-4").is_dir()

    (root / "output" / "failure").write_text("an earlier attempt's failure")  # each run starts with empty outputs
    hps = ["--model_name_or_path", str(tiny_encoder), *HPS, "--max_steps", "6"]  # more steps: the same run, extended
    assert cli.main(["local", "--root", str(root), "--", *hps]) == 0
    out = capsys.readouterr()
    assert f"resuming from {root / 'checkpoints' / 'checkpoint-4'}" in out.err
    assert "failure:" not in out.out and not (root / "output" / "failure").exists()
    assert (root / "checkpoints" / "checkpoint-6").is_dir()


def test_a_failed_local_job_says_why(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    def in_process(command: list[str], environ: Mapping[str, str]) -> int:
        monkeypatch.setenv("SAGEMAKER_BASE_DIR", environ["SAGEMAKER_BASE_DIR"])
        return cli.main(command[3:])

    monkeypatch.setattr(local, "run_child", in_process)
    argv = [*folders(tmp_path), "--root", str(tmp_path / "tree"), "--"]
    assert cli.main(["local", *argv, "--model_name_or_path", str(tiny_encoder), "--text_column", "review"]) == 1
    out = capsys.readouterr().out
    assert "the job failed (exit 1)" in out and "failure:     text_column='review': no such column" in out


@pytest.mark.external
def test_local_in_a_child_process_streams_the_log_and_resumes(tmp_path, tiny_encoder) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SM_")} | {
        "PYTHONPATH": str(REPO / "tests" / "netguard")
    }
    root = tmp_path / "tree"
    argv = [sys.executable, "-m", "sm_train", "local", *folders(tmp_path), "--root", str(root), "--"]
    hps = ["--model_name_or_path", str(tiny_encoder), "--save_steps", "2", "--train_batch_size", "8"]
    first = subprocess.run([*argv, *hps, "--max_steps", "2"], env=environ, capture_output=True, text=True,
                           timeout=300, cwd=REPO)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    assert "[metric] train_loss = " in first.stdout and f"the job finished in {root}" in first.stdout
    second = subprocess.run([*argv, *hps, "--max_steps", "4"], env=environ, capture_output=True, text=True,
                            timeout=300, cwd=REPO)  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from {root / 'checkpoints' / 'checkpoint-2'}" in second.stderr
    assert (root / "model" / "model.safetensors").is_file()
