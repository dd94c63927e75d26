"""local.py and local_tree.py: the command line of `local`/`check`, the /opt/ml tree they build (read back by env.py
as a job reads it) and how a rerun changes it, which folders may be a tree (marked as sm_train's, or empty; never a
user's folder), where trees go by default (outside the clone), the child's environment, the end summary, and the
container entry's hand-over to the toolkit in script mode."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sm_train import local, local_rerun, local_tree
from sm_train.config import parse
from sm_train.device import DeviceInfo
from sm_train.env import from_environ
from sm_train.errors import UserError
from tests.unit.test_checkpoint import make as make_checkpoint


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
    cfg = parse(list(env.hyperparameters.items()), env, DeviceInfo())
    assert (
        cfg.training_args.max_steps == -1
        and cfg.training_args.do_train is True
        and cfg.training_args.label_names == ["a", "b"]
    )


def rerun(root: Path, *argv: str) -> dict:
    """`local --root ROOT ARGV` up to the job, and the tree's settings as the job reads them."""
    local.prepare_tree(local.parse_request(["--root", str(root), *argv], "local"), "local")
    return from_environ({"SAGEMAKER_BASE_DIR": str(root)})


def test_a_rerun_changes_only_what_it_gives(tmp_path) -> None:
    asked = request(tmp_path, "--model_name_or_path", "bert", "--epochs", "1", "--learning_rate", "3e-5",
                    "--max-steps", "8", root=str(tmp_path / "tree"))  # fmt: skip
    root = local.prepare_tree(asked, "local")
    env = rerun(root, "--checkpoints", str(tmp_path / "ck"), "--", "--epochs", "3", "--max_steps", "10")
    # One value changed; the others, the channels and (until given) the checkpoint dir kept. A name replaces the one
    # spelt alike (max-steps, max_steps).
    assert env.hyperparameters == {"model_name_or_path": "bert", "epochs": "3", "learning_rate": "3e-5",
                                   "max_steps": "10"}  # fmt: skip
    assert set(env.channels) == {"train", "validation"} and env.checkpoint_dir == tmp_path / "ck"
    assert (env.channels["validation"] / "val.csv").resolve() == tmp_path / "val.csv"
    assert rerun(root) == env  # a bare rerun: the tree as it is, the checkpoint dir given before included
    assert rerun(root, "--", "--epochs", "3") == env

    # null removes a hyperparameter (its default applies again) or a channel.
    (tmp_path / "other").mkdir()
    env = rerun(root, "--channel", f"train={tmp_path / 'other'}", "--channel", "validation=null", "--",
                "--learning_rate", "null")  # fmt: skip
    assert env.hyperparameters == {"model_name_or_path": "bert", "epochs": "3", "max_steps": "10"}
    assert set(env.channels) == {"train"} and env.channels["train"].resolve() == tmp_path / "other"
    assert sorted(p.name for p in (root / "input" / "data").iterdir()) == ["train"]
    assert env.checkpoint_dir == tmp_path / "ck"
    assert rerun(root, "--", "--fp16").hyperparameters["fp16"] == "true"


def test_channels_are_recorded_and_run_local_trees_are_relinked(tmp_path) -> None:
    """docker/run_local.sh leaves empty mount points in input/data and records the folders in .sm_train-channels/:
    `local` links them again. A mount point whose folder is not recorded is a usage error naming the channel."""
    root = local.prepare_tree(request(tmp_path, "--epochs", "1", root=str(tmp_path / "tree")), "local")
    record = root / local_tree.CHANNELS
    assert {p.name: p.readlink() for p in record.iterdir()} == {"train": tmp_path / "train",
                                                                "validation": tmp_path / "val.csv"}  # fmt: skip
    for link in (root / "input" / "data").iterdir():  # as run_local.sh leaves them: mount points
        link.unlink() if link.is_symlink() else (next(link.iterdir()).unlink(), None)
        link.mkdir(exist_ok=True)
    env = rerun(root)
    assert env.channels["train"].resolve() == tmp_path / "train"
    assert (env.channels["validation"] / "val.csv").resolve() == tmp_path / "val.csv"
    (root / "input" / "data" / "train").unlink()
    (root / "input" / "data" / "train").mkdir()
    (record / "train").unlink()
    with pytest.raises(UserError, match="does not record where channel train comes from .* --channel train=PATH"):
        rerun(root)
    assert rerun(root, "--channel", f"train={tmp_path / 'train'}").channels["train"].resolve() == tmp_path / "train"


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
        (["--channel", "train="], "--channel takes NAME=PATH"),
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


def test_a_marked_tree_is_reused_with_model_and_output_empty_at_start_and_checkpoints_kept(
    tmp_path, monkeypatch
) -> None:
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
    assert not (root / local_rerun.PREVIOUS).exists()  # the run succeeded: the earlier model and outputs are gone


@pytest.mark.parametrize("finished", [True, False], ids=["after a finished run", "after a failed run"])
def test_a_tree_an_earlier_version_made_is_reused_and_marked(tmp_path, monkeypatch, finished) -> None:
    """Trees made before the marker hold nothing but the layout and a run's outputs: resumed, not refused."""
    seen: dict[str, list[str]] = {}
    monkeypatch.setattr(local, "run_child", at_start(seen))
    root = earlier_tree(tmp_path / "tree", finished)
    assert local.main(["--root", str(root)], {}) == 0
    assert seen == {"model": [], "output": ["data"], "checkpoints": ["checkpoint-2", "checkpoint-2/model.safetensors"]}
    assert local_tree.is_marked(root)


def test_model_and_output_are_set_aside_only_in_a_marked_tree(tmp_path) -> None:
    folder = users_project(tmp_path / "project")
    before = snapshot(folder)
    with pytest.raises(UserError, match="is not a tree sm_train made"):
        local_rerun.set_aside(folder)
    assert snapshot(folder) == before


def finished_tree(tmp_path: Path) -> Path:
    """A tree after a finished run: a model, its outputs and a checkpoint."""
    root = local.prepare_tree(request(tmp_path, "--epochs", "1", "--lr", "3e-5", root=str(tmp_path / "tree")), "local")
    for name in ("model/model.safetensors", "model/all_results.json", "output/data/all_results.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"{name} of the earlier run")
    make_checkpoint(root / "checkpoints", 2)
    return root


def test_check_never_changes_an_existing_tree(tmp_path) -> None:
    """`check --root TREE` with or without settings given: the tree stays byte for byte as it was; with settings,
    the job checked is a temporary view of the tree with them (its own model, output and checkpoint dirs)."""
    root = finished_tree(tmp_path)
    before = snapshot(root)
    assert local.prepare_tree(local.parse_request(["--root", str(root)], "check"), "check") == root
    (tmp_path / "other").mkdir()
    asked = local.parse_request(["--root", str(root), "--channel", f"validation={tmp_path / 'other'}", "--",
                                 "--lr", "null", "--max_steps", "4"], "check")  # fmt: skip
    view = local.prepare_tree(asked, "check")
    assert snapshot(root) == before and view != root and not view.is_relative_to(root)
    env = from_environ({"SAGEMAKER_BASE_DIR": str(view)})
    assert env.hyperparameters == {"epochs": "1", "max_steps": "4"}
    assert env.channels["train"].resolve() == tmp_path / "train"
    assert env.channels["validation"].resolve() == tmp_path / "other"
    assert env.checkpoint_dir == root / "checkpoints"
    assert env.model_dir.resolve() == root / "model" and env.output_data_dir.resolve() == root / "output" / "data"


def test_trees_go_outside_the_clone_by_default(tmp_path, monkeypatch) -> None:
    """Without --root: ${XDG_CACHE_HOME:-~/.cache}/sm_train/runs/<timestamp>, never the working directory (the clone
    users upload as source_dir); a second tree of the same second gets its own folder."""
    clone = tmp_path / "clone"
    clone.mkdir()
    monkeypatch.chdir(clone)
    monkeypatch.setattr(local, "run_child", at_start({}))
    (tmp_path / "data").mkdir()
    argv = ["--channel", f"train={tmp_path / 'data'}", "--", "--epochs", "1"]
    assert local.main(argv, {"XDG_CACHE_HOME": str(tmp_path / "cache")}) == 0
    assert local.main(argv, {"XDG_CACHE_HOME": str(tmp_path / "cache")}) == 0
    trees = sorted((tmp_path / "cache" / "sm_train" / "runs").iterdir())
    assert len(trees) == 2 and all(local_tree.is_marked(tree) for tree in trees)
    assert list(clone.iterdir()) == []
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert local.default_root({"XDG_CACHE_HOME": "relative"}).parent == tmp_path / "home/.cache/sm_train/runs"


def child(returncode: int, *written: str, saves: int | None = None):  # noqa: ANN201 - a run_child stand-in
    """A job that writes these files into the tree (each file's text: its name), saves checkpoint-`saves`, and
    exits returncode."""

    def run(command: list[str], environ: dict[str, str]) -> int:
        root = Path(environ["SAGEMAKER_BASE_DIR"])
        for name in written:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(name)
        if saves:
            make_checkpoint(root / "checkpoints", saves)
        return returncode

    return run


@pytest.mark.parametrize(
    ("returncode", "written", "says"),
    [
        (1, ["output/failure"], "the job failed (exit 1)"),
        (143, ["output/failure"], "the job stopped by SIGTERM (exit 143)"),
        (-2, [], "the job stopped by SIGINT (exit -2)"),
    ],
    ids=["refused", "stopped after a checkpoint", "killed by Ctrl-C"],
)
def test_a_rerun_that_writes_no_model_keeps_the_earlier_one(tmp_path, monkeypatch, capsys, returncode, written,
                                                            says) -> None:  # fmt: skip
    root = finished_tree(tmp_path)
    before = snapshot(root / "model"), snapshot(root / "output" / "data")
    monkeypatch.setattr(local, "run_child", child(returncode, *written, saves=3 if returncode == 143 else None))
    assert local.main(["--root", str(root), "--", "--lr", "1e-3"], {}) == returncode
    assert (snapshot(root / "model"), snapshot(root / "output" / "data")) == before
    assert not (root / local_rerun.PREVIOUS).exists()
    out = capsys.readouterr().out
    assert f"{says} in {root}" in out and "model:       " + str(root / "model") + " (the earlier run's" in out
    if written:  # the run's failure file, beside the earlier outputs
        label = "stopped:" if returncode == 143 else "failure:"
        assert (root / "output" / "failure").read_text() == "output/failure"
        assert f"  {label:<12} output/failure ({root / 'output' / 'failure'})" in out
    newest = "checkpoint-3" if returncode == 143 else "checkpoint-2"
    assert f"checkpoints: {root / 'checkpoints'} (newest: {newest})" in out
    assert f"run again (resumes from {newest}): python -m sm_train local --root {root}" in out
    assert from_environ({"SAGEMAKER_BASE_DIR": str(root)}).hyperparameters["lr"] == "1e-3"  # kept: fix or undo it


def test_a_run_that_wrote_its_model_replaces_the_earlier_one(tmp_path, monkeypatch, capsys) -> None:
    """A push to the Hub that failed after the model was saved: the new model and outputs are kept."""
    root = finished_tree(tmp_path)
    monkeypatch.setattr(local, "run_child", child(1, "model/all_results.json", "output/failure"))
    assert local.main(["--root", str(root)], {}) == 1
    assert sorted(snapshot(root / "model")) == ["all_results.json"]
    assert (root / "model" / "all_results.json").read_text() == "model/all_results.json"
    assert "the earlier run's" not in capsys.readouterr().out


def test_without_checkpoints_the_summary_does_not_promise_a_resume(tmp_path, monkeypatch, capsys) -> None:
    root = local.prepare_tree(request(tmp_path, "--save_strategy", "no", root=str(tmp_path / "tree")), "local")
    monkeypatch.setattr(local, "run_child", child(0, "model/all_results.json"))
    assert local.main(["--root", str(root)], {}) == 0
    out = capsys.readouterr().out
    assert f"the job finished in {root}" in out and "(none saved)" in out and "resumes" not in out
    assert f"run again (no checkpoint was saved: it starts afresh): python -m sm_train local --root {root}" in out


def script_mode_env(tmp_path: Path, hosts: list[str]) -> object:
    """A script-mode tree (what an estimator with an entry_point writes) on the given hosts."""
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"sagemaker_program": '"scripts/train.py"'}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": hosts[0], "hosts": hosts}))
    return from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})


def resolver(known: set[str], hangs: set[str] = frozenset(), asked: list[str] | None = None):  # noqa: ANN201
    """A getaddrinfo stand-in: names in `known` resolve, those in `hangs` never answer, others fail at once."""
    import socket
    import threading

    def resolve(host: str, port: object) -> list:
        if asked is not None:
            asked.append(host)
        if host in hangs:
            threading.Event().wait(60)
        if host not in known:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(2, 1, 6, "", ("10.0.0.1", 0))]

    return resolve


def test_script_mode_outside_sagemaker_fails_in_seconds_naming_the_host_that_does_not_resolve(
    tmp_path, monkeypatch
) -> None:
    """The toolkit would wait 15 minutes, printing nothing, for algo-2 to resolve: the job fails first, saying how to
    run it locally, and never hands over."""
    import time

    env = script_mode_env(tmp_path, ["algo-1", "algo-2", "algo-3"])
    handed: list[list[str]] = []
    monkeypatch.setattr(local, "replace_process", lambda command, environ: handed.append(command))
    monkeypatch.setattr(local, "toolkit_command", lambda env: ["train"])
    monkeypatch.setattr(local.socket, "getaddrinfo", resolver({"algo-1"}, hangs={"algo-3"}))
    monkeypatch.setattr(local, "RESOLVE_SECONDS", 0.5)
    started = time.monotonic()
    with pytest.raises(UserError) as raised:
        local.hand_over_to_toolkit(env, {})
    assert time.monotonic() - started < 5 and handed == []
    reason = str(raised.value)
    assert "'algo-2', 'algo-3' do not resolve here" in reason and "sagemaker_program=scripts/train.py" in reason
    assert "--hostname algo-1" in reason and "SM_STUDIO_LOCAL_MODE=true" in reason and len(reason) <= 1024
    assert local.unresolved_hosts(["algo-1", "algo-2"], resolver({"algo-1"}), timeout=1) == ["algo-2"]


@pytest.mark.parametrize(
    ("environ", "known", "checked"),
    [({}, {"algo-1"}, True),  # a container given the tree's host name (docker run --hostname algo-1)
     ({"TRAINING_JOB_ARN": "arn:aws:sagemaker:us-east-1:1:training-job/j"}, set(), False),  # the toolkit's wait
     ({"SM_STUDIO_LOCAL_MODE": "True"}, set(), False)],  # the toolkit's switch that skips its wait
)  # fmt: skip
def test_script_mode_hands_over_where_the_hosts_resolve_or_the_toolkit_should_wait(
    tmp_path, monkeypatch, environ, known, checked
) -> None:
    env = script_mode_env(tmp_path, ["algo-1"])
    handed: list[list[str]] = []
    asked: list[str] = []
    monkeypatch.setattr(local, "replace_process", lambda command, environ: handed.append(command))
    monkeypatch.setattr(local, "toolkit_command", lambda env: ["train"])
    monkeypatch.setattr(local.socket, "getaddrinfo", resolver(known, asked=asked))
    local.hand_over_to_toolkit(env, environ)
    assert handed == [["train"]] and asked == (["algo-1"] if checked else [])
