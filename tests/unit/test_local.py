"""local.py and local_tree.py: the command line of `local`/`check`, the /opt/ml tree they build (read back by env.py
as a job reads it), which folders may be a tree (marked as sm_train's, or empty; never a user's folder), the child's
environment, and the container entry's hand-over to the toolkit in script mode."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sm_train import local, local_tree
from sm_train.config import parse
from sm_train.env import from_environ
from sm_train.errors import UserError


def request(tmp_path: Path, *hyperparameters: str, **extra: str) -> local.Request:
    (tmp_path / "train").mkdir(exist_ok=True)
    (tmp_path / "val.csv").write_text("text,label\na,b\n")
    argv = ["--channel", f"train={tmp_path / 'train'}", "--channel", f"validation={tmp_path / 'val.csv'}"]
    argv += [token for key, value in extra.items() for token in (f"--{key}", value)]
    return local.parse_request([*argv, "--", *hyperparameters], "local")


def test_the_tree_reads_back_as_a_job_with_raw_string_hyperparameters(tmp_path) -> None:
    asked = request(tmp_path, "--model_name_or_path", "bert", "--max_steps", "-1", "--do_train", "--epochs=2",
                    "--label_names", "a", "b", root=str(tmp_path / "tree"))  # fmt: skip
    root = local.prepare_tree(asked, "local")
    raw = json.loads((root / "input" / "config" / "hyperparameters.json").read_text())
    # Values as given (as SDK v3 writes them), typed by their field when the job parses them.
    assert raw == {"model_name_or_path": "bert", "max_steps": "-1", "do_train": "true", "epochs": "2",
                   "label_names": '["a", "b"]'}  # fmt: skip
    env = from_environ(local.job_environment({"SM_CHANNELS": '["x"]', "RANK": "3", "PATH": "/bin"}, root))
    assert env.hyperparameters == {"model_name_or_path": "bert", "max_steps": "-1", "do_train": "true", "epochs": "2",
                                   "label_names": '["a", "b"]'}  # fmt: skip
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
    assert env.hyperparameters == {"epochs": "3"} and set(env.channels) == {"train", "validation"}
    assert env.checkpoint_dir == tmp_path / "ck"
    local.prepare_tree(local.parse_request(["--root", str(root)], "local"), "local")  # as it is: nothing changes
    assert from_environ({"SAGEMAKER_BASE_DIR": str(root)}) == env


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--channel", "train"], "--channel takes NAME=PATH"),
        (["--channel", "tr ain=x"], "'tr ain' is not a channel name"),
        (["--channel", "train=/no/such/dir"], "/no/such/dir does not exist"),
        (["--epochs", "1"], "local: cannot use --epochs 1; usage: python -m sm_train local --channel"),
        (["--root", "a", "--root", "b"], "give one --root"),
        (["--", "epochs"], "Unexpected argument 'epochs'"),
        (["--channel", "..=."], "--channel ..=.: '..' is not a channel name; NAME becomes the folder input/data/NAME"),
        (["--channel", ".=."], "'.' is not a channel name"),
        (["--channel", ".cache=."], "'.cache' is not a channel name"),
        (["--channel", "=."], "--channel takes NAME=PATH"),
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


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under folder, with each file's bytes (None for a folder or a link)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() and not p.is_symlink() else None
        for p in sorted(folder.rglob("*"))
    }


def no_child(command: list[str], environ: dict[str, str]) -> int:
    raise AssertionError("the job must not start")


def users_files(folder: Path) -> Path:
    """The user's base model in ./model and notes in ./output, as in a project folder."""
    for name, content in {"model/weights.bin": b"\x00\x01weights", "output/report.txt": b"notes"}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def users_project(folder: Path) -> Path:
    users_files(folder)
    (folder / "data").mkdir()
    (folder / "data" / "train.csv").write_text("text,label\na,b\n")
    return folder


def earlier_tree(folder: Path, finished: bool = True) -> Path:
    """A tree as sm_train made it before trees were marked: config JSON, a channel link, a run's outputs."""
    config = folder / "input" / "config"
    config.mkdir(parents=True)
    for name in ("hyperparameters", "resourceconfig", "inputdataconfig", "checkpointconfig"):
        (config / f"{name}.json").write_text("{}")
    (folder.parent / "channel").mkdir(exist_ok=True)
    (folder / "input" / "data").mkdir()
    (folder / "input" / "data" / "train").symlink_to(folder.parent / "channel", target_is_directory=True)
    for name in ("model", "output/data", "code", "checkpoints/checkpoint-2"):
        (folder / name).mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-2" / "model.safetensors").write_bytes(b"step 2")
    if finished:  # a finished run writes all_results.json beside the model and in the outputs
        for name in ("model/model.safetensors", "model/all_results.json", "output/data/all_results.json"):
            (folder / name).write_text("{}")
    else:  # a failed run leaves only its failure file
        (folder / "output" / "failure").write_text("an earlier run's failure")
    return folder


@pytest.mark.parametrize(
    ("make", "found"),
    [
        (users_project, "found data, output/report.txt, model/weights.bin."),
        (
            lambda folder: users_files(earlier_tree(folder, finished=False)),
            "found output/report.txt, model/weights.bin.",
        ),
    ],
    ids=["a project folder", "an earlier tree's layout with the user's files in model and output"],
)
def test_local_leaves_a_folder_sm_train_did_not_make_as_it_is(tmp_path, monkeypatch, capsys, make, found) -> None:
    """`local --root .` in a project folder once deleted the user's ./model and ./output: now it is refused."""
    monkeypatch.setattr(local, "run_child", no_child)
    folder = make(tmp_path / "project")
    (tmp_path / "channel").mkdir(exist_ok=True)
    before = snapshot(folder)
    argv = ["--root", str(folder), "--channel", f"train={tmp_path / 'channel'}", "--", "--model_name_or_path",
            str(folder / "model")]  # fmt: skip
    assert local.main(argv, {}) == 2
    assert snapshot(folder) == before and not (folder / local_tree.MARKER).exists()
    err = capsys.readouterr().err
    assert (
        f"local: --root {folder} is not empty and is not a tree sm_train made (it has no .sm_train-tree file)" in err
    )
    assert found in err and "it never deletes or overwrites files it did not write" in err
    assert "Pass a new or empty folder as --root, or omit --root" in err


def test_a_root_that_is_a_file_is_a_usage_error(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(local, "run_child", no_child)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "data").mkdir()
    assert local.main(["--root", str(tmp_path / "notes.txt"), "--channel", f"train={tmp_path / 'data'}"], {}) == 2
    assert f"local: --root {tmp_path / 'notes.txt'} is a file; the job's tree is a folder." in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["..", ".", ".hidden"])
def test_a_channel_name_that_is_not_a_folder_name_is_a_usage_error(tmp_path, monkeypatch, capsys, name) -> None:
    """`..` or `.` would make input/data/NAME the tree's own input folder or its parent."""
    monkeypatch.setattr(local, "run_child", no_child)
    (tmp_path / "data").mkdir()
    assert local.main(["--root", str(tmp_path / "tree"), "--channel", f"{name}={tmp_path / 'data'}"], {}) == 2
    assert f"{name!r} is not a channel name" in capsys.readouterr().err and not (tmp_path / "tree").exists()


def test_an_empty_folder_becomes_a_marked_tree(tmp_path) -> None:
    (tmp_path / "tree").mkdir()
    root = local.prepare_tree(request(tmp_path, "--epochs", "1", root=str(tmp_path / "tree")), "local")
    assert root == tmp_path / "tree"
    assert json.loads((root / ".sm_train-tree").read_text())["version"] == 1
    assert from_environ({"SAGEMAKER_BASE_DIR": str(root)}).hyperparameters == {"epochs": "1"}
    new = local.prepare_tree(request(tmp_path, root=str(tmp_path / "new" / "tree")), "local")  # made: marked too
    assert (new / local_tree.MARKER).read_text() == local_tree.MARKER_TEXT


def at_start(seen: dict[str, list[str]]):  # noqa: ANN201 - a run_child stand-in
    """A child that records what model/, output/ and checkpoints/ hold as the job starts."""

    def child(command: list[str], environ: dict[str, str]) -> int:
        root = Path(environ["SAGEMAKER_BASE_DIR"])
        seen.update({name: sorted(snapshot(root / name)) for name in ("model", "output", "checkpoints")})
        return 0

    return child


def test_a_marked_tree_is_reused_with_model_and_output_emptied_and_checkpoints_kept(tmp_path, monkeypatch) -> None:
    seen: dict[str, list[str]] = {}
    monkeypatch.setattr(local, "run_child", at_start(seen))
    root = local.prepare_tree(request(tmp_path, "--epochs", "1", root=str(tmp_path / "tree")), "local")
    (root / "model" / "model.safetensors").write_text("an earlier run's model")
    (root / "output" / "failure").write_text("an earlier run's failure")  # opened with "x": must not be there
    (root / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (root / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    assert local.main(["--root", str(root)], {}) == 0
    assert seen == {
        "model": [],
        "output": ["data"],
        "checkpoints": ["checkpoint-2", "checkpoint-2/trainer_state.json"],
    }
    assert from_environ({"SAGEMAKER_BASE_DIR": str(root)}).hyperparameters == {"epochs": "1"}


@pytest.mark.parametrize("finished", [True, False], ids=["after a finished run", "after a failed run"])
def test_a_tree_an_earlier_version_made_is_reused_and_marked(tmp_path, monkeypatch, finished) -> None:
    """Trees made before the marker hold nothing but the layout and a run's outputs: resumed, not refused."""
    seen: dict[str, list[str]] = {}
    monkeypatch.setattr(local, "run_child", at_start(seen))
    root = earlier_tree(tmp_path / "tree", finished)
    assert local.main(["--root", str(root)], {}) == 0
    assert seen == {"model": [], "output": ["data"], "checkpoints": ["checkpoint-2", "checkpoint-2/model.safetensors"]}
    assert local_tree.is_marked(root)


def test_rotation_happens_only_in_a_marked_tree(tmp_path) -> None:
    folder = users_project(tmp_path / "project")
    before = snapshot(folder)
    with pytest.raises(UserError, match="is not a tree sm_train made"):
        local_tree.rotate(folder)
    assert snapshot(folder) == before
