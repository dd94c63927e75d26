"""local.py: the command line of `local`/`check`, the /opt/ml tree they build (read back by env.py as a job reads
it), the child's environment, and the container entry's hand-over to the toolkit in script mode."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sm_train import local
from sm_train.config import parse
from sm_train.env import from_environ
from sm_train.errors import UserError


def request(tmp_path: Path, *hyperparameters: str, **extra: str) -> local.Request:
    (tmp_path / "train").mkdir(exist_ok=True)
    (tmp_path / "val.csv").write_text("text,label\na,b\n")
    argv = ["--channel", f"train={tmp_path / 'train'}", "--channel", f"validation={tmp_path / 'val.csv'}"]
    argv += [token for key, value in extra.items() for token in (f"--{key}", value)]
    return local.parse_request([*argv, "--", *hyperparameters], "local")


def test_the_tree_reads_back_as_a_job_with_sdk_v2_hyperparameters(tmp_path) -> None:
    asked = request(tmp_path, "--model_name_or_path", "bert", "--max_steps", "-1", "--do_train", "--epochs=2",
                    "--label_names", "a", "b", root=str(tmp_path / "tree"))  # fmt: skip
    root = local.prepare_tree(asked, "local")
    raw = json.loads((root / "input" / "config" / "hyperparameters.json").read_text())
    assert raw == {"model_name_or_path": '"bert"', "max_steps": "-1", "do_train": "true", "epochs": "2",
                   "label_names": '["a", "b"]'}  # fmt: skip
    env = from_environ(local.job_environment({"SM_CHANNELS": '["x"]', "RANK": "3", "PATH": "/bin"}, root))
    assert env.hyperparameters == {"model_name_or_path": "bert", "max_steps": -1, "do_train": True, "epochs": 2,
                                   "label_names": ["a", "b"]}  # fmt: skip
    assert env.channels == {"train": root / "input" / "data" / "train", "validation": root / "input/data/validation"}
    assert (env.channels["train"]).resolve() == tmp_path / "train"
    assert (env.channels["validation"] / "val.csv").resolve() == tmp_path / "val.csv"  # a file: linked in a folder
    assert env.checkpoint_dir == root / "checkpoints" and env.checkpoints_synced  # kept between runs
    assert env.launcher == {} and env.job_name == "local-tree" and env.program is None
    cfg = parse(list(env.hyperparameters.items()), env)
    assert (
        cfg.training_args.max_steps == -1
        and cfg.training_args.do_train is True
        and cfg.training_args.label_names == ["a", "b"]
    )


def test_a_second_run_replaces_only_what_it_gives(tmp_path) -> None:
    root = local.prepare_tree(request(tmp_path, "--epochs", "1", root=str(tmp_path / "tree")), "local")
    again = local.parse_request(["--root", str(root), "--checkpoints", str(tmp_path / "ck"), "--", "--epochs", "3"],
                                "local")  # fmt: skip
    local.prepare_tree(again, "local")
    env = from_environ({"SAGEMAKER_BASE_DIR": str(root)})
    assert env.hyperparameters == {"epochs": 3} and set(env.channels) == {"train", "validation"}
    assert env.checkpoint_dir == tmp_path / "ck"
    local.prepare_tree(local.parse_request(["--root", str(root)], "local"), "local")  # as it is: nothing changes
    assert from_environ({"SAGEMAKER_BASE_DIR": str(root)}) == env


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--channel", "train"], "--channel takes NAME=PATH"),
        (["--channel", "tr ain=x"], "--channel takes NAME=PATH"),
        (["--channel", "train=/no/such/dir"], "/no/such/dir does not exist"),
        (["--epochs", "1"], "local: cannot use --epochs 1; usage: python -m sm_train local --channel"),
        (["--root", "a", "--root", "b"], "give one --root"),
        (["--", "epochs"], "Unexpected argument 'epochs'"),
    ],
)
def test_usage_errors(argv, says) -> None:
    with pytest.raises(UserError, match=None) as error:
        local.parse_request(argv, "local")
    assert says in str(error.value)


def test_no_tree_and_nothing_to_build_it_from(tmp_path) -> None:
    with pytest.raises(UserError, match="is not a job tree"):
        local.prepare_tree(local.parse_request(["--root", str(tmp_path)], "local"), "local")


def test_a_folder_in_the_data_dir_that_is_not_a_link_is_left_alone(tmp_path) -> None:
    root = local.prepare_tree(request(tmp_path, root=str(tmp_path / "tree")), "local")
    (root / "input" / "data" / "mine").mkdir()
    (root / "input" / "data" / "mine" / "data.csv").write_text("x\n")
    with pytest.raises(UserError, match="is not a channel link sm_train made"):
        local.prepare_tree(request(tmp_path, root=str(root)), "local")


def test_the_child_environment(tmp_path) -> None:
    environ = {"SM_HPS": "{}", "SAGEMAKER_BASE_DIR": "/x", "OMPI_COMM_WORLD_RANK": "1", "LOCAL_RANK": "1",
               "HF_TOKEN": "t", "PYTHONPATH": "/p"}  # fmt: skip
    child = local.job_environment(environ, tmp_path / "tree")
    assert child["SAGEMAKER_BASE_DIR"] == str(tmp_path / "tree") and child["HF_TOKEN"] == "t"
    assert not {"SM_HPS", "OMPI_COMM_WORLD_RANK", "LOCAL_RANK"} & set(child)
    assert child["PYTHONPATH"] == f"{Path(local.__file__).parents[1]}:/p"


def test_script_mode_hands_over_to_the_toolkit_once(tmp_path) -> None:
    """The image run by a script-mode estimator: the toolkit runs the entry point; under it, or under a launcher,
    or without sagemaker_program (bring your own container), sm_train runs the job itself."""
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"sagemaker_program": '"scripts/train.py"'}))
    base = {"SAGEMAKER_BASE_DIR": str(tmp_path)}
    env = from_environ(base)
    assert env.program == "scripts/train.py" and env.hyperparameters == {}
    assert local.toolkit_command(env) == [sys.executable, "-m", "sagemaker_training.cli.train"]
    assert local.toolkit_command(from_environ(base | {"SM_TRAINING_ENV": '{"job_name": "j"}'})) is None
    assert local.toolkit_command(from_environ(base | {"RANK": "0"})) is None
    (config / "hyperparameters.json").write_text(json.dumps({"epochs": "1"}))
    assert local.toolkit_command(from_environ(base)) is None
