"""`python -m sm_train local`: a job on plain folders in an /opt/ml tree outside the clone; a rerun on the same tree
keeps its settings, changes only what it gives, and resumes; a rerun that fails before writing a model leaves the
earlier model and outputs as they were. `local`, `check` and docker/run_local.sh leave any folder they did not make
as it is, and judge a folder alike."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from sm_train import cli, local, local_tree
from sm_train.env import from_environ
from sm_train.errors import UserError
from tests import tiny
from tests.e2e.test_container import run_script
from tests.jobs import REPO, write_rows
from tests.unit.test_local import earlier_tree, snapshot, users_files, users_project

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


def test_local_runs_the_job_and_a_rerun_keeps_its_settings_and_resumes(tmp_path, monkeypatch, tiny_encoder,
                                                                        capsys) -> None:  # fmt: skip
    """In-process: the child (`python -m sm_train train` on the tree) is run here as cli.main(["train"])."""
    commands = []

    def in_process(command: list[str], environ: Mapping[str, str]) -> int:
        commands.append(command)
        monkeypatch.setenv("SAGEMAKER_BASE_DIR", environ["SAGEMAKER_BASE_DIR"])
        monkeypatch.setenv("TRAINING_JOB_NAME", environ["TRAINING_JOB_NAME"])
        return cli.main(command[3:])

    monkeypatch.setattr(local, "run_child", in_process)
    clone = tmp_path / "clone"  # the working directory: a clone, which users upload as source_dir
    clone.mkdir()
    monkeypatch.chdir(clone)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    argv = [*folders(tmp_path), "--", "--model_name_or_path", str(tiny_encoder), *HPS, "--max_steps", "4"]
    assert cli.main(["local", *argv]) == 0
    assert commands == [[sys.executable, "-m", "sm_train", "train"]]
    root = next((tmp_path / "cache" / "sm_train" / "runs").iterdir())  # the default tree, outside the clone
    assert list(clone.iterdir()) == []
    out = capsys.readouterr().out
    assert f"the job finished in {root}" in out and f"checkpoints: {root / 'checkpoints'}" in out
    assert f"run again (resumes from checkpoint-4): python -m sm_train local --root {root}" in out
    assert (root / "model" / "model.safetensors").is_file() and (root / "checkpoints" / "checkpoint-4").is_dir()

    # One value given: the model, the other hyperparameters and the channels are the tree's; more steps extend it.
    assert cli.main(["local", "--root", str(root), "--", "--max_steps", "6"]) == 0
    out = capsys.readouterr()
    assert f"resuming from {root / 'checkpoints' / 'checkpoint-4'}" in out.err
    assert "failure:" not in out.out and not (root / "output" / "failure").exists()
    assert (root / "checkpoints" / "checkpoint-6").is_dir()
    finished = snapshot(root / "model"), snapshot(root / "output" / "data")
    assert json.loads((root / "output" / "data" / "all_results.json").read_text())["eval_samples"] == 8

    # A change the same-run rule refuses: the job fails before training, and the finished model stays.
    assert cli.main(["local", "--root", str(root), "--", "--learning_rate", "1e-3"]) == 1
    out = capsys.readouterr().out
    assert (snapshot(root / "model"), snapshot(root / "output" / "data")) == finished
    assert f"the job failed (exit 1) in {root}" in out and "(the earlier run's: this run wrote no model)" in out
    assert "failure:     Not resuming from" in out and "learning_rate: 5e-05 -> 0.001" in out
    assert (root / "output" / "failure").read_text().startswith("Not resuming from")

    # null removes the change (the default applies again): the same run, resumed and extended.
    assert cli.main(["local", "--root", str(root), "--", "--learning_rate", "null", "--max_steps", "8"]) == 0
    out = capsys.readouterr()
    assert f"resuming from {root / 'checkpoints' / 'checkpoint-6'}" in out.err
    assert "learning_rate" not in json.loads((root / "input" / "config" / "hyperparameters.json").read_text())
    assert not (root / "output" / "failure").exists() and (root / "checkpoints" / "checkpoint-8").is_dir()
    assert snapshot(root / "model") != finished[0] and list(clone.iterdir()) == []


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
    finished = snapshot(root / "model")

    # Stopped on purpose (SIGTERM to `local`, as Ctrl-C or a kill would): the job saves, stops and says how to resume;
    # the model of the finished run stays.
    again = [*argv[:4], "--root", str(root), "--", "--max_steps", "100000", "--save_steps", "100000"]
    third = subprocess.Popen(again, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    log = []
    for line in third.stdout:  # type: ignore[union-attr]
        log.append(line)
        if "first training step of this attempt done" in line:
            third.send_signal(signal.SIGTERM)
    assert third.wait(timeout=300) == 143, "".join(log)[-3000:]
    out = "".join(log)
    step = max(int(p.name.split("-")[1]) for p in (root / "checkpoints").glob("checkpoint-*"))
    assert step > 4 and f"the job stopped by SIGTERM (exit 143) in {root}" in out
    assert f"stopped:     Stopped by SIGTERM at step {step}: checkpoint-{step} is saved" in out
    assert f"run again (resumes from checkpoint-{step}): python -m sm_train local --root {root}" in out
    assert snapshot(root / "model") == finished and "the job failed" not in out
    assert "Traceback" not in out  # a stop that was asked for is not a crash


@pytest.mark.parametrize("command", ["local", "check"])
def test_a_users_folder_as_root_is_refused_and_left_as_it_is(tmp_path, monkeypatch, capsys, command) -> None:
    """A project folder with the user's base model in ./model and notes in ./output: `local --root .` once deleted
    both; `check --root .` must not write into it either."""
    monkeypatch.setattr(local, "run_child", lambda *args: pytest.fail("the job must not start"))
    project = users_project(tmp_path / "project")
    monkeypatch.chdir(project)
    before = snapshot(project)
    hps = ["--model_name_or_path", "./model"]
    assert cli.main([command, "--root", ".", "--channel", "train=data", "--", *hps]) == 2
    assert snapshot(project) == before
    err = capsys.readouterr().err
    assert f"{command}: --root {project} is not empty and is not a tree sm_train made" in err
    assert "found data, output/report.txt, model/weights.bin." in err and "Traceback" not in err


def test_run_local_refuses_a_users_folder_and_leaves_it_as_it_is(tmp_path) -> None:
    project = users_project(tmp_path / "project")
    before = snapshot(project)
    done, args = run_script(tmp_path, "--root", "project", "--channel", "train=project/data", "--", "--epochs", "1")
    assert done.returncode == 2 and not args and snapshot(project) == before
    assert (
        f"--root {project} is not empty and is not a tree sm_train made (it has no .sm_train-tree file)" in done.stderr
    )
    assert "found data, output/report.txt, model/weights.bin." in done.stderr
    assert "it never deletes or overwrites files it did not write" in done.stderr


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--root", "notes.txt"], "is a file; the job's tree is a folder."),
        (["--channel", "..=ch"], "--channel ..=ch: '..' is not a channel name"),
        (["--channel", ".=ch"], "'.' is not a channel name"),
        (["--channel", ".hidden=ch"], "'.hidden' is not a channel name"),
    ],
)
def test_run_local_usage_errors_about_the_tree(tmp_path, argv, says) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "ch").mkdir()
    done, args = run_script(tmp_path, *argv, HOME=str(tmp_path / "home"), XDG_CACHE_HOME="")
    assert done.returncode == 2 and says in done.stderr and not args
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "home").exists()  # no tree made


def test_run_local_marks_an_empty_folder_as_local_does(tmp_path) -> None:
    (tmp_path / "tree").mkdir()
    done, _ = run_script(tmp_path, "--root", "tree", "--", "--epochs", "1")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tree" / local_tree.MARKER).read_text() == local_tree.MARKER_TEXT
    local.prepare_tree(local.parse_request(["--root", str(tmp_path / "tree")], "local"), "local")  # local reuses it


def test_run_local_reruns_a_tree_local_made(tmp_path) -> None:
    """The trees are one format: run_local.sh mounts the channels `local` linked and keeps its settings, and its
    check changes nothing in the tree; `local` then relinks the channels from the record run_local.sh keeps."""
    (tmp_path / "data").mkdir()
    root = local.prepare_tree(local.parse_request(["--root", str(tmp_path / "tree"), "--channel",
                                                  f"train={tmp_path / 'data'}", "--", "--epochs", "2"], "local"),
                              "local")  # fmt: skip
    for name in ("model/model.safetensors", "model/all_results.json", "output/data/all_results.json",
                 "checkpoints/c/x"):  # fmt: skip
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("an earlier run's")
    before = snapshot(root)
    done, args = run_script(tmp_path, "--check", "--root", "tree", "--", "--lr", "1e-3")
    assert done.returncode == 0 and args[-1] == "check", done.stderr
    assert snapshot(root) == before and f"{tmp_path / 'data'}:/opt/ml/input/data/train:ro" in args
    done, args = run_script(tmp_path, "--root", "tree")
    assert done.returncode == 0 and args[-1] == "train", done.stderr
    assert f"{tmp_path / 'data'}:/opt/ml/input/data/train:ro" in args
    assert sorted(snapshot(root / "model")) == [] and sorted(snapshot(root / "output")) == ["data"]
    assert (root / "checkpoints" / "c" / "x").read_text() == "an earlier run's"
    local.prepare_tree(local.parse_request(["--root", str(root)], "local"), "local")
    env = from_environ({"SAGEMAKER_BASE_DIR": str(root)})
    assert env.hyperparameters == {"epochs": "2"} and env.channels["train"].resolve() == tmp_path / "data"
    assert env.checkpoint_dir == root / "checkpoints"


@pytest.mark.parametrize(
    "make",
    [
        users_project,
        lambda folder: users_files(earlier_tree(folder)),
        lambda folder: earlier_tree(folder, finished=True),
        lambda folder: earlier_tree(folder, finished=False),
        lambda folder: (folder / "output").mkdir(parents=True) or (folder / "output" / "failure").write_text("x"),
        lambda folder: (folder / "model").mkdir(parents=True) or (folder / "model" / "config.json").write_text("{}"),
    ],
    ids=["project", "earlier tree and user files", "earlier finished tree", "earlier failed tree",
         "an earlier failure file only", "a model without results"],
)  # fmt: skip
def test_run_local_and_local_judge_an_unmarked_folder_alike(tmp_path, make) -> None:
    """The rule for trees made before the marker is written twice (Python and bash): the same verdict, the same
    paths named."""
    make(tmp_path / "folder")
    try:
        local_tree.check_root(tmp_path / "folder", "local")
        said = None
    except UserError as error:
        said = str(error).split(" found ")[1].split(". sm_train")[0]
    done, _ = run_script(tmp_path, "--root", "folder", "--", "--epochs", "1")
    assert done.returncode == (0 if said is None else 2), done.stderr
    assert said is None or f" found {said}. sm_train" in done.stderr
