"""Jobs outside SageMaker: local runs on plain folders, the trees they run in, and the container entry in script mode.

`python -m sm_train local --channel NAME=PATH ... [--root DIR] [--checkpoints DIR] -- --name value ...` builds an
/opt/ml-shaped tree (hyperparameters.json encoded as SDK v2 does, channels linked to the folders, a checkpoint dir
kept across runs) and runs `python -m sm_train train` on it in a child process with SAGEMAKER_BASE_DIR: the very
process a container runs, with its own signals, logging and exit code, and free to replace itself with torchrun.

Each run empties the tree's model/ and output/, so a tree is marked as sm_train's by a file at its root,
`.sm_train-tree` (JSON: {"version": 1, "note": ...}; local_tree.py). --root takes a new or empty folder or a marked
tree; any other folder is refused (exit 2) and left as it is: sm_train never deletes files it did not write.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sm_train.dialects import NO_VALUE, argv_items, normalize_key
from sm_train.dist import replace_process, with_package_on_path
from sm_train.env import LAUNCHER_VARIABLES, SageMakerEnv, from_environ
from sm_train.errors import UserError
from sm_train.local_tree import Request, build_tree, check_root, rotate

logger = logging.getLogger(__name__)

DEFAULT_PARENT = Path(".sm_train")  # local trees go under ./.sm_train/<timestamp>/ unless --root says otherwise
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")  # a folder input/data/NAME: not ".", ".." or hidden
USAGE = "--channel NAME=PATH ... [--root DIR] [--checkpoints DIR] -- --name value ..."


def _channel(command: str, value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise UserError(f"{command}: --channel takes NAME=PATH (e.g. --channel train=data/train), got {value!r}.")
    if not CHANNEL_NAME.match(name):
        raise UserError(
            f"{command}: --channel {value}: {name!r} is not a channel name; NAME becomes the folder "
            f"input/data/NAME, so it takes letters, digits, '.', '_' and '-' and does not start with '.' "
            f"(e.g. --channel train=data/train)."
        )
    if not Path(path).expanduser().exists():
        raise UserError(f"{command}: --channel {value}: {path} does not exist.")
    return name, Path(path).expanduser().resolve()


def parse_request(argv: Sequence[str], command: str) -> Request:
    """The command's own options before `--`, the job's hyperparameters after it."""
    args = list(argv)
    own, hyperparameters = (args[: args.index("--")], args[args.index("--") + 1 :]) if "--" in args else (args, [])
    channels: dict[str, Path] = {}
    roots: list[Path] = []
    checkpoints = None
    for key, value in argv_items(own):
        option = normalize_key(key)
        values = value if isinstance(value, list) else [value]
        if value is NO_VALUE or option not in ("channel", "root", "checkpoints"):
            raise UserError(
                f"{command}: cannot use {key}{'' if value is NO_VALUE else ' ' + str(value)}; usage: python -m "
                f"sm_train {command} {USAGE} (hyperparameters go after --)."
            )
        if option == "channel":
            channels.update(_channel(command, v) for v in values)
        elif option == "root":
            roots += [Path(v).expanduser().resolve() for v in values]
        else:
            checkpoints = Path(values[-1]).expanduser().resolve()
    argv_items(hyperparameters)  # refuses a stray value now, before anything runs
    request = Request(channels, tuple(roots), checkpoints, tuple(hyperparameters))
    if len(roots) > 1 and (request.builds or command != "check"):
        raise UserError(f"{command}: give one --root (several existing trees can be checked at once, nothing else).")
    return request


def prepare_tree(request: Request, command: str, root: Path | None = None) -> Path:
    """The tree the command runs in: an existing one, updated with what the request gives, or a new one."""
    root = root or (request.roots[0] if request.roots else (DEFAULT_PARENT / time.strftime("%Y%m%d-%H%M%S")).resolve())
    check_root(root, command)  # before anything is written: a file, or a folder sm_train did not make, is refused
    exists = (root / "input" / "config" / "hyperparameters.json").is_file()
    if not exists and not request.builds:
        raise UserError(
            f"{command}: {root} is not a job tree (no input/config/hyperparameters.json); give the channels and "
            f"hyperparameters: python -m sm_train {command} {USAGE}"
        )
    build_tree(root, request, command)
    return root


def job_environment(environ: Mapping[str, str], root: Path) -> dict[str, str]:
    """The child's environment: this one without SageMaker's or a launcher's variables, pointed at the tree."""
    dropped = ("SM_", "OMPI_COMM_WORLD_")
    kept = {k: v for k, v in environ.items() if not k.startswith(dropped) and k not in LAUNCHER_VARIABLES}
    return with_package_on_path(kept) | {"SAGEMAKER_BASE_DIR": str(root), "TRAINING_JOB_NAME": f"local-{root.name}"}


def run_child(command: list[str], environ: Mapping[str, str]) -> int:
    """Run the job with this terminal's output (progress bars on a terminal, plain lines otherwise); SIGINT,
    SIGTERM and SIGHUP are passed on once, so the job saves and stops as it would in SageMaker."""
    process = subprocess.Popen(command, env=dict(environ), start_new_session=True)

    def forward(signum: int, frame: Any) -> None:
        process.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        return process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def summary(root: Path, returncode: int) -> str:
    """Where the job's results are, and how to resume it."""
    env = from_environ({"SAGEMAKER_BASE_DIR": str(root)})
    checkpoints = (env.hyperparameters or {}).get("checkpoint_dir") or env.checkpoint_dir
    lines = [
        f"sm_train local: the job {'finished' if returncode == 0 else f'failed (exit {returncode})'} in {root}",
        f"  model:       {env.model_dir}",
        f"  outputs:     {env.output_data_dir}",
        f"  checkpoints: {checkpoints}",
    ]
    failure = env.output_dir / "failure"
    if failure.is_file():
        lines.append(f"  failure:     {failure.read_text(encoding='utf-8').splitlines()[0]}")
    lines.append(f"  run again (resumes from the checkpoints): python -m sm_train local --root {root}")
    return "\n".join(lines)


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """`local`: a job on plain folders, as SageMaker runs it; outputs start empty each run, checkpoints are kept."""
    try:
        root = prepare_tree(parse_request(argv, "local"), "local")
        rotate(root)  # as each SageMaker attempt starts; only in a tree sm_train marked
    except UserError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    sys.stdout.write(f"sm_train local: running the job in {root}\n")
    sys.stdout.flush()
    returncode = run_child([sys.executable, "-m", "sm_train", "train"], job_environment(environ, root))
    sys.stdout.write(summary(root, returncode) + "\n")
    return returncode


def toolkit_command(env: SageMakerEnv) -> list[str] | None:
    """The container entry in script mode (an estimator with entry_point and this image): SageMaker's toolkit
    fetches source_dir, installs its requirements.txt and runs the entry point, which starts sm_train again under
    it. None: run the job here (bring your own container, or already under the toolkit or a launcher)."""
    if not env.program or env.training_env or env.launcher:
        return None
    if importlib.util.find_spec("sagemaker_training") is None:
        logger.warning(
            "sagemaker_program=%s is set but the SageMaker training toolkit is not installed: running sm_train's own "
            "job instead of the entry point",
            env.program,
        )
        return None
    return [sys.executable, "-m", "sagemaker_training.cli.train"]


def hand_over_to_toolkit(env: SageMakerEnv, environ: Mapping[str, str]) -> None:
    """Replace this process with the toolkit in script mode, as the Hugging Face training containers start it."""
    command = toolkit_command(env)
    if command:
        logger.info("script mode (sagemaker_program=%s): SageMaker's training toolkit runs it", env.program)
        replace_process(command, environ)
