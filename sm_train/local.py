"""Jobs outside SageMaker: local runs on plain folders, the trees they run in, and the container entry in script mode.

`python -m sm_train local --channel NAME=PATH ... [--root DIR] [--checkpoints DIR] -- --name value ...` builds an
/opt/ml-shaped tree (hyperparameters.json encoded as SDK v3 does, channels linked to the folders, a checkpoint dir
kept across runs) and runs `python -m sm_train train` on it in a child process with SAGEMAKER_BASE_DIR: the very
process a container runs, with its own signals, logging and exit code, and free to replace itself with torchrun.

Trees go to ${XDG_CACHE_HOME:-~/.cache}/sm_train/runs/<timestamp>/ unless --root says otherwise: never inside the
clone, which is the source_dir users upload. A rerun on a tree starts from what it holds and replaces only what is
given (local_tree.py); its model and outputs replace the earlier ones only when it writes a model (local_rerun.py).
A tree is marked as sm_train's by a file at its root, `.sm_train-tree`; --root takes a new or empty folder or a
marked tree, and any other folder is refused (exit 2) and left as it is: sm_train never deletes files it did not
write. `check` never changes an existing tree: it checks a view of it (local_tree.build_tree's `base`).
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import logging
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sm_train import signals
from sm_train.checkpoint import complete_checkpoints
from sm_train.dialects import NO_VALUE, argv_items, normalize_key
from sm_train.dist import replace_process, with_package_on_path
from sm_train.env import SageMakerEnv, from_environ, launcher_variables
from sm_train.errors import ConfigError, UserError
from sm_train.local_rerun import set_aside, settle, wrote_model
from sm_train.local_tree import REMOVE, Request, build_tree, check_root, is_tree

logger = logging.getLogger(__name__)

CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")  # a folder input/data/NAME: not ".", ".." or hidden
USAGE = "--channel NAME=PATH ... [--root DIR] [--checkpoints DIR] -- --name value ..."
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # passed on to the job, which saves and stops


def runs_folder(environ: Mapping[str, str]) -> Path:
    """Where trees go without --root: the user's cache, outside any clone (SDK uploads of source_dir honour no ignore
    file)."""
    cache = environ.get("XDG_CACHE_HOME", "")
    return (Path(cache) if Path(cache).is_absolute() else Path.home() / ".cache") / "sm_train" / "runs"


def default_root(environ: Mapping[str, str]) -> Path:
    """runs/<timestamp>, -2, -3, ... when a tree of the same second exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = runs_folder(environ)
    names = itertools.chain([stamp], (f"{stamp}-{n}" for n in itertools.count(2)))
    return next(folder / name for name in names if not (folder / name).exists())


def _channel(command: str, value: str) -> tuple[str, Path | None]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise UserError(f"{command}: --channel takes NAME=PATH (e.g. --channel train=data/train), got {value!r}.")
    if not CHANNEL_NAME.match(name):
        raise UserError(
            f"{command}: --channel {value}: {name!r} is not a channel name; NAME becomes the folder "
            f"input/data/NAME, so it takes letters, digits, '.', '_' and '-' and does not start with '.' "
            f"(e.g. --channel train=data/train)."
        )
    if path == REMOVE:
        return name, None
    if not Path(path).expanduser().exists():
        raise UserError(f"{command}: --channel {value}: {path} does not exist.")
    return name, Path(path).expanduser().resolve()


def parse_request(argv: Sequence[str], command: str) -> Request:
    """The command's own options before `--`, the job's hyperparameters after it."""
    args = list(argv)
    own, hyperparameters = (args[: args.index("--")], args[args.index("--") + 1 :]) if "--" in args else (args, [])
    channels: dict[str, Path | None] = {}
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


def _view(root: Path, request: Request) -> Path:
    """`check` on an existing tree with settings given: a temporary tree of those settings over root's inputs, its
    model, output and checkpoint dirs; root itself is not changed."""
    view = Path(tempfile.mkdtemp(prefix="sm_train-check-"))
    atexit.register(shutil.rmtree, view, ignore_errors=True)
    build_tree(view, request, "check", base=root)
    return view


def prepare_tree(request: Request, command: str, root: Path | None = None) -> Path:
    """The tree the command runs in: an existing one, changed by what the request gives, or a new one. `check` never
    writes into an existing tree."""
    root = root or request.roots[0]
    check_root(root, command)  # before anything is written: a file, or a folder sm_train did not make, is refused
    if not is_tree(root) and not request.builds:
        raise UserError(
            f"{command}: {root} is not a job tree (no input/config/hyperparameters.json); give the channels and "
            f"hyperparameters: python -m sm_train {command} {USAGE}"
        )
    if command == "check" and is_tree(root):
        return _view(root, request) if request.builds else root
    build_tree(root, request, command)
    return root


def job_environment(environ: Mapping[str, str], root: Path) -> dict[str, str]:
    """The child's environment: this one without SageMaker's or a launcher's variables, pointed at the tree."""
    launcher = launcher_variables(environ)
    kept = {k: v for k, v in environ.items() if not k.startswith("SM_") and k not in launcher}
    return with_package_on_path(kept) | {"SAGEMAKER_BASE_DIR": str(root), "TRAINING_JOB_NAME": f"local-{root.name}"}


def run_child(command: list[str], environ: Mapping[str, str]) -> int:
    """Run the job with this terminal's output (progress bars on a terminal, plain lines otherwise); SIGINT,
    SIGTERM and SIGHUP are passed on once, so the job saves and stops as it would in SageMaker."""
    process = subprocess.Popen(command, env=dict(environ), start_new_session=True)
    with signals.forward_process_signals(process, FORWARDED_SIGNALS):
        return process.wait()


def _outcome(returncode: int) -> str:
    """finished, failed (exit N), or stopped by SIGNAL (exit N): a job stopped by a signal exits 128 + its number
    (or is killed by it: a negative return code)."""
    if returncode == 0:
        return "finished"
    signum = -returncode if returncode < 0 else returncode - 128
    if signum in FORWARDED_SIGNALS:
        return f"stopped by {signal.Signals(signum).name} (exit {returncode})"
    return f"failed (exit {returncode})"


def summary(root: Path, returncode: int, restored: bool = False) -> str:
    """Where the job's results are, and how to run it again (resuming only when there is a checkpoint)."""
    env = from_environ({"SAGEMAKER_BASE_DIR": str(root)})
    checkpoints = Path((env.hyperparameters or {}).get("checkpoint_dir") or env.checkpoint_dir)
    newest = complete_checkpoints(checkpoints)
    earlier = " (the earlier run's: this run wrote no model)" if restored else ""
    lines = [
        f"sm_train local: the job {_outcome(returncode)} in {root}",
        f"  model:       {env.model_dir}{earlier}",
        f"  outputs:     {env.output_data_dir}{earlier}",
        f"  checkpoints: {checkpoints}" + (f" (newest: {newest[-1][1].name})" if newest else " (none saved)"),
    ]
    failure = env.output_dir / "failure"
    if returncode != 0 and failure.is_file():
        first = (failure.read_text(encoding="utf-8").splitlines() or [""])[0]
        label = "stopped:" if _outcome(returncode).startswith("stopped") else "failure:"
        lines.append(f"  {label:<12} {first}" + (f" ({failure})" if restored else ""))
    again = f"python -m sm_train local --root {root}"
    if newest:
        lines.append(f"  run again (resumes from {newest[-1][1].name}): {again}")
    else:
        lines.append(f"  run again (no checkpoint was saved: it starts afresh): {again}")
    return "\n".join(lines)


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """`local`: a job on plain folders, as SageMaker runs it; each run starts with empty model and output dirs, the
    earlier ones kept until it writes a model; checkpoints are kept."""
    try:
        request = parse_request(argv, "local")
        root = prepare_tree(request, "local", None if request.roots else default_root(environ))
        set_aside(root)  # as each SageMaker attempt starts, with the earlier model and outputs kept in the tree
    except UserError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    sys.stdout.write(f"sm_train local: running the job in {root}\n")
    sys.stdout.flush()
    returncode = run_child([sys.executable, "-m", "sm_train", "train"], job_environment(environ, root))
    try:
        restored = settle(root, returncode == 0 or wrote_model(root))
    except UserError as error:
        sys.stderr.write(f"{error}\n")
        restored = False
    sys.stdout.write(summary(root, returncode, restored) + "\n")
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


# How long the hosts of a script-mode tree get to resolve outside SageMaker. A name that resolves at all does within
# a second; one that does not fails at once or, with an unreachable DNS server, after the resolver's own retries.
RESOLVE_SECONDS = 5.0


def unresolved_hosts(
    hosts: Sequence[str], resolve: Callable[..., object] | None = None, timeout: float | None = None
) -> list[str]:
    """The hosts that do not resolve within `timeout` seconds (default RESOLVE_SECONDS; all looked up at once, each in
    a thread of its own: getaddrinfo takes no timeout, and a lookup still pending at the deadline counts as not
    resolving). `resolve`: getaddrinfo's stand-in in tests."""
    resolve = resolve or socket.getaddrinfo
    timeout = RESOLVE_SECONDS if timeout is None else timeout
    resolved: set[str] = set()

    def look_up(host: str) -> None:
        try:
            resolve(host, None)
        except (OSError, UnicodeError):  # socket.gaierror is an OSError
            return
        resolved.add(host)

    threads = [threading.Thread(target=look_up, args=(host,), daemon=True) for host in hosts]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [host for host in hosts if host not in resolved]


def require_resolvable_hosts(env: SageMakerEnv, environ: Mapping[str, str]) -> None:
    """Before the hand-over outside SageMaker: every host of the tree resolves, or a ConfigError in seconds naming the
    one that does not. The toolkit looks each host up again and again for 15 minutes before it runs the entry point,
    printing nothing (its `_wait_hostname_resolution`), so a script-mode tree run by `docker run`, run_local.sh or
    `local` without those names looked hung. Inside SageMaker (TRAINING_JOB_ARN is set) that wait is right: the
    hosts of a cluster appear as it boots. SM_STUDIO_LOCAL_MODE=true is the toolkit's own switch that skips it.

    Failing beats making the names resolve here: /etc/hosts is root's (a job run as your user cannot write it), a
    name pointed at this container would be wrong for a tree of several hosts, and a container given the tree's host
    name (`docker run --hostname algo-1`, which run_local.sh passes) resolves it already, as SageMaker's does."""
    if environ.get("TRAINING_JOB_ARN") or environ.get("SM_STUDIO_LOCAL_MODE", "").lower() == "true":
        return
    missing = unresolved_hosts(env.hosts)
    if not missing:
        return
    names = ", ".join(f"'{host}'" for host in missing)
    raise ConfigError(
        f"Script mode (sagemaker_program={env.program}) hands the job to SageMaker's training toolkit, which waits "
        f"up to 15 minutes for every host of the job to resolve, and {names} "
        f"{'does' if len(missing) == 1 else 'do'} not resolve here (not a SageMaker job: no TRAINING_JOB_ARN). "
        f"To run it outside SageMaker, give the container the tree's host name (docker run --hostname "
        f"{env.current_host}, as docker/run_local.sh does; --add-host NAME:ADDRESS for other hosts), or set "
        "SM_STUDIO_LOCAL_MODE=true (the toolkit then skips its wait), or remove sagemaker_program from the "
        "hyperparameters: sm_train then runs the job itself."
    )


def hand_over_to_toolkit(env: SageMakerEnv, environ: Mapping[str, str]) -> None:
    """Replace this process with the toolkit in script mode, as the Hugging Face training containers start it; outside
    SageMaker only when the tree's hosts resolve (require_resolvable_hosts)."""
    command = toolkit_command(env)
    if command:
        require_resolvable_hosts(env, environ)
        logger.info("script mode (sagemaker_program=%s): SageMaker's training toolkit runs it", env.program)
        replace_process(command, environ)
