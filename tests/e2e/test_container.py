"""The container entry: `python -m sm_train train` on an /opt/ml tree with no toolkit (what docker/Dockerfile runs),
script mode's hand-over to the toolkit, the build context either builder sends, and docker/run_local.sh up to
`docker run` itself (no Docker engine here: a stand-in records what it was given)."""

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
from tests.unit.test_local import snapshot

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


def test_the_base_contract_is_checked_first_and_the_image_keeps_only_the_installed_package() -> None:
    """The first step on BASE checks python on PATH, a pip allowed to install (PEP 668) and Python 3.10+; the package
    is built as a wheel in a stage of its own and the wheel removed once installed (no source copy, build/ or
    egg-info in the image)."""
    lines = (DOCKER / "Dockerfile").read_text().splitlines()
    steps = [line for line in lines if re.match(r"^(FROM|RUN|COPY|ARG|ENV|WORKDIR) ", line)]
    assert steps[1:3] == ["FROM ${BASE} AS base", steps[2]] and steps[2].startswith("RUN command -v python ")
    contract = "\n".join(lines[lines.index(steps[2]) :])
    contract = contract[: contract.index("\n\n")]
    for says in ("no 'python' on PATH", "EXTERNALLY-MANAGED", "(3, 10)", 'find_spec("pip")'):
        assert says in contract, says
    assert [line for line in steps if line.startswith("FROM")] == ["FROM ${BASE} AS base", "FROM base AS wheel",
                                                                 "FROM base"]  # fmt: skip
    final = steps[steps.index("FROM base") :]
    assert not any(line.startswith("COPY") and "--from=wheel" not in line for line in final)
    install = "\n".join(lines[lines.index(next(line for line in final if "/tmp/sm_train-wheel/*.whl" in line)) :])
    install = install[: install.index("\n\n")]  # the wheel installed with the image's extras, then removed
    assert 'pip install --no-cache-dir "${wheel}${EXTRAS:+[${EXTRAS}]}"' in install
    assert "rm -rf /tmp/sm_train-wheel" in install and 'ARG EXTRAS="peft,tensorboard"' in final


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


RECORDER = """#!/bin/sh
printf "%s\\n" "$@" > "$RECORDED/args"
tree="" previous=""
for arg in "$@"; do
  if [ "$previous" = -v ]; then case $arg in *:/opt/ml) tree=${arg%:/opt/ml} ;; esac; fi
  previous=$arg
done
rm -rf "$RECORDED/config" && cp -r "$tree/input/config" "$RECORDED/config"
"""


def run_script(tmp_path: Path, *argv: str, cwd: Path | None = None, job: str = "", **environ: str
               ) -> tuple[subprocess.CompletedProcess, list[str]]:  # fmt: skip
    """docker/run_local.sh with a stand-in docker that records its arguments, one per line, and the job's config
    files as the container would see them (tmp_path/config), then runs `job` (shell, $tree: the /opt/ml mounted)."""
    recorder = tmp_path / "docker"
    recorder.write_text(RECORDER + job + "\n")
    recorder.chmod(0o755)
    (tmp_path / "args").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env |= {"DOCKER": str(recorder), "RECORDED": str(tmp_path), **environ}
    done = subprocess.run(["bash", str(DOCKER / "run_local.sh"), *argv], env=env, capture_output=True, text=True,
                          cwd=cwd or tmp_path, timeout=60)  # fmt: skip
    args = (tmp_path / "args").read_text().splitlines() if (tmp_path / "args").exists() else []
    return done, args


def seen(tmp_path: Path, name: str = "hyperparameters") -> dict:
    """A config file as the container saw it in the last run."""
    return json.loads((tmp_path / "config" / f"{name}.json").read_text())


def test_run_local_builds_the_tree_and_the_docker_command(tmp_path) -> None:
    (tmp_path / "my data" / "train").mkdir(parents=True)
    root = tmp_path / "tree"
    (root / "output").mkdir(parents=True)
    (root / "output" / "failure").write_text("an earlier run's")  # an earlier failed run's, in an unmarked tree
    done, args = run_script(
        tmp_path, "--root", "tree", "--gpus", "--image", "me/sm-train:1", "--channel", "train=my data/train",
        "--", "--model_name_or_path", 'bert "x"', "--learning_rate", "5e-5", "--fp16", "--epochs=2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    user = f"{os.getuid()}:{os.getgid()}"
    assert args == [
        "run", "--rm", "--name", "sm-train-tree", "--hostname", "algo-1", "--shm-size", "2g",
        "-e", "TRAINING_JOB_NAME=local-tree", "--user", user, "-e", "HOME=/tmp",
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
    assert "the container is sm-train-tree (docker stop sm-train-tree: it saves a checkpoint and stops)" in done.stderr


def test_run_local_passes_variables_and_engine_options(tmp_path) -> None:
    """-e as docker's (KEY=VALUE, or KEY for this shell's value), DOCKER_OPTIONS after the script's own options (a
    repeated one wins), and a container name docker accepts whatever the tree's folder is called."""
    done, args = run_script(
        tmp_path, "--root", "my run (2)", "-e", "OMP_NUM_THREADS=1", "--env", "SECRET", "-e", "A=b c", "--",
        "--epochs", "1", DOCKER_OPTIONS="--cpus 2  --name  other", DOCKER_USER="", SECRET="s",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    image = args.index("sm-train")
    assert args[:4] == ["run", "--rm", "--name", "sm-train-my-run--2-"] and args[image:] == ["sm-train", "train"]
    options = args[4 : args.index("-v")]
    assert options[-10:] == ["-e", "OMP_NUM_THREADS=1", "-e", "SECRET", "-e", "A=b c",
                             "--cpus", "2", "--name", "other"]  # fmt: skip
    assert "s" not in args  # the secret by name, not its value
    done, args = run_script(tmp_path, "--check", "-e", "1X=2", "--", "--epochs", "1")
    assert done.returncode == 2 and "-e 1X=2: takes KEY=VALUE" in done.stderr and not args
    done, args = run_script(tmp_path, "--root", "my run (2)", "--check")
    assert done.returncode == 0 and args[2:4] == ["--name", "sm-train-check-my-run--2-"]


def test_run_local_check_without_gpus_as_the_image_user(tmp_path) -> None:
    """Without --root, --check makes no tree: the job's files are in a temporary folder, removed at the end."""
    (tmp_path / "ck").mkdir()
    done, args = run_script(tmp_path, "--check", "--checkpoints", "ck", "--", "--epochs", "1", DOCKER_USER="",
                            HF_TOKEN="hf_x", HOME=str(tmp_path / "home"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert args[-2:] == ["sm-train", "check"] and "--gpus" not in args and "--user" not in args
    assert f"{tmp_path / 'ck'}:/opt/ml/checkpoints" in args and "HF_TOKEN" in args  # the token's name, not its value
    assert seen(tmp_path) == {"epochs": "1"}
    temporary = args[args.index("-v") + 1].removesuffix(":/opt/ml")
    assert not Path(temporary).exists() and not (tmp_path / "home").exists()


def tree_run(tmp_path: Path, *argv: str, job: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    done, args = run_script(tmp_path, "--root", "tree", *argv, job=job)
    assert done.returncode == (1 if "exit 1" in job else 0), done.stderr
    return done, args


def test_run_local_reruns_keep_the_trees_settings(tmp_path) -> None:
    for name in ("train", "val", "other"):
        (tmp_path / name).mkdir()
    tree_run(tmp_path, "--channel", "train=train", "--channel", "validation=val", "--checkpoints", "ck", "--",
             "--model_name_or_path", "bert", "--epochs", "1", "--learning_rate", "3e-5")  # fmt: skip
    mounts = [
        f"{tmp_path / 'train'}:/opt/ml/input/data/train:ro",
        f"{tmp_path / 'val'}:/opt/ml/input/data/validation:ro",
        f"{tmp_path / 'ck'}:/opt/ml/checkpoints",
    ]
    _, args = tree_run(tmp_path)  # a bare rerun: the tree as it is
    assert all(mount in args for mount in mounts)
    assert seen(tmp_path) == {"model_name_or_path": "bert", "epochs": "1", "learning_rate": "3e-5"}
    _, args = tree_run(tmp_path, "--", "--epochs", "3")  # one value changed, the rest kept
    assert all(mount in args for mount in mounts)
    assert seen(tmp_path) == {"model_name_or_path": "bert", "epochs": "3", "learning_rate": "3e-5"}
    assert set(seen(tmp_path, "inputdataconfig")) == {"train", "validation"}
    _, args = tree_run(tmp_path, "--channel", "train=other", "--channel", "validation=null", "--",
                       "--learning-rate", "null", "--fp16")  # fmt: skip
    assert f"{tmp_path / 'other'}:/opt/ml/input/data/train:ro" in args and "validation" not in " ".join(args)
    assert seen(tmp_path) == {"model_name_or_path": "bert", "epochs": "3", "fp16": "true"}
    assert list(seen(tmp_path, "inputdataconfig")) == ["train"]
    assert sorted(p.name for p in (tmp_path / "tree" / "input" / "data").iterdir()) == ["train"]
    assert f"{tmp_path / 'ck'}:/opt/ml/checkpoints" in args  # the checkpoint dir given once is kept


FAILS = 'echo "Not resuming from /opt/ml/checkpoints/checkpoint-4: ..." > "$tree/output/failure"; exit 1'


def test_run_local_keeps_the_earlier_model_when_a_rerun_writes_none_and_check_changes_nothing(tmp_path) -> None:
    (tmp_path / "train").mkdir()
    writes_model = 'echo "{}" > "$tree/model/all_results.json"; echo weights > "$tree/model/model.safetensors"'
    tree_run(tmp_path, "--channel", "train=train", "--", "--epochs", "1", job=writes_model)
    root = tmp_path / "tree"
    (root / "checkpoints" / "checkpoint-4").mkdir()
    finished = snapshot(root)
    done, args = tree_run(tmp_path, "--check", "--", "--learning_rate", "1e-3")
    assert snapshot(root) == finished and args[-1] == "check"  # byte for byte, whatever the check was given
    assert seen(tmp_path) == {"epochs": "1", "learning_rate": "1e-3"}
    assert {f"{root / name}:/opt/ml/{name}" for name in ("model", "output", "checkpoints")} <= set(args)

    done, _ = tree_run(tmp_path, "--", "--learning_rate", "1e-3", job=FAILS)
    assert {
        k: v for k, v in snapshot(root).items() if not k.startswith(("input", ".sm_train-", "output/failure"))
    } == {
        k: v for k, v in finished.items() if not k.startswith(("input", ".sm_train-"))
    }  # the model and outputs as they were
    assert (root / "output" / "failure").read_text().startswith("Not resuming from")
    assert "the earlier run's: this run wrote no model" in done.stderr and "failure: Not resuming from" in done.stderr
    assert f"run again (resumes from its checkpoints): docker/run_local.sh --root {root}" in done.stderr
    done, _ = tree_run(tmp_path, "--", "--learning_rate", "null", job=writes_model.replace("weights", "new weights"))
    assert (root / "model" / "model.safetensors").read_text() == "new weights\n"
    assert not (root / "output" / "failure").exists() and not (root / ".sm_train-previous").exists()


def test_run_local_trees_go_outside_the_clone(tmp_path) -> None:
    clone = tmp_path / "clone"
    clone.mkdir()
    done, args = run_script(tmp_path, "--", "--epochs", "1", cwd=clone, HOME=str(tmp_path / "home"),
                            XDG_CACHE_HOME="")  # fmt: skip
    assert done.returncode == 0, done.stderr
    [root] = (tmp_path / "home" / ".cache" / "sm_train" / "runs").iterdir()
    assert f"{root}:/opt/ml" in args and list(clone.iterdir()) == []
    run_script(tmp_path, "--", "--epochs", "1", cwd=clone, XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert len(list((tmp_path / "cache" / "sm_train" / "runs").iterdir())) == 1 and list(clone.iterdir()) == []


def ignored(patterns: list[str], path: str) -> bool:
    """Whether a build context leaves out `path` (relative, '/'-separated), by .dockerignore's rules for these
    patterns: the last pattern matching the path or a folder above it decides; '!' keeps; '**' any folders."""
    verdict = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        body = re.escape(pattern.lstrip("!")).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        parts = path.split("/")
        if any(re.fullmatch(body, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            verdict = not keep
    return verdict


def dockerignore(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_either_builder_sends_a_small_context() -> None:
    """The legacy builder reads only the root .dockerignore, BuildKit docker/Dockerfile.dockerignore: the same
    patterns, which keep what the Dockerfile copies and leave out .git, venvs, caches and local runs."""
    patterns = dockerignore(REPO / ".dockerignore")
    assert patterns == dockerignore(DOCKER / "Dockerfile.dockerignore")
    copied = [s for line in (DOCKER / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")
              for s in line.split()[1:-1]]  # fmt: skip
    assert copied == ["pyproject.toml", "README.md", "sm_train", "--from=wheel", "/wheel"]
    for path in ["pyproject.toml", "README.md", "sm_train/cli.py", "sm_train/tasks/base.py"]:
        assert not ignored(patterns, path), path
    for path in [".git/HEAD", ".venv/bin/python", "scripts/train.py", "docker/run_local.sh", ".venv-tf4/pyvenv.cfg",
                 ".sm_train/20250101-120000/model/x",
                 "bench.json", "tests/unit/test_cli.py", "sm_train/__pycache__/cli.cpython-311.pyc", ".demo/dl/x",
                 "sm_train.egg-info/PKG-INFO", ".pytest_cache/v/x", "scripts/.sm_train/run/model/x"]:  # fmt: skip
        assert ignored(patterns, path), path


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
def test_the_docker_scripts_are_shellcheck_clean() -> None:
    scripts = [str(path) for path in sorted(DOCKER.glob("*.sh"))] + [str(REPO / ".ci" / "run")]
    done = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
