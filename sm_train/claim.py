"""The checkpoint dir: placed where it cannot lose data, and written by one job at a time."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO

from sm_train.env import SageMakerEnv
from sm_train.errors import ConfigError

OWNER = ".sm_train_owner"  # who holds the dir: locked while the job runs, and says who it is
_held: dict[Path, IO[str]] = {}  # this process's open, locked owner files: a lock lives as long as its process


def _inside(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def check_placement(directory: Path, env: SageMakerEnv) -> None:
    """The checkpoint dir must be a directory apart from the model, output, code and input dirs: inside the model
    dir it would be packed into model.tar.gz and removed with a failed job's output; around or inside the others,
    checkpoint sync would upload them or rotation delete from them."""
    for parent in (directory, *directory.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    f"The checkpoint dir {directory} cannot be created: {parent} is a file. Set checkpoint_dir to a "
                    "directory path (default: the estimator's checkpoint_local_path, /opt/ml/checkpoints)."
                )
            break
    protected = {
        "the model dir": env.model_dir,
        "the output dir": env.output_dir,
        "the output data dir": env.output_data_dir,
        "the code dir": env.root / "code",
        **{f"the {name!r} input channel": path for name, path in env.channels.items()},
    }
    here = directory.resolve()
    for what, path in protected.items():
        other = path.resolve()
        if _inside(here, other) or _inside(other, here):
            where = "is inside" if _inside(here, other) else "contains"
            raise ConfigError(
                f"The checkpoint dir {directory} {where} {what} ({path}): checkpoints there would be packed into the "
                "model artifact, deleted with a failed job's outputs, or mixed with data and code. Set checkpoint_dir "
                "to a separate directory, or leave it unset to use the estimator's checkpoint_local_path "
                "(/opt/ml/checkpoints)."
            )


def claim(directory: Path, env: SageMakerEnv) -> None:
    """Lock the checkpoint dir for this job, or fail naming the running job that holds it (two jobs in one dir
    rotate away and overwrite each other's checkpoints). The kernel releases the lock when the process ends, kill -9
    included, so a restarted attempt always gets it."""
    if directory.resolve() in _held:  # this process holds it already (jobs run one after another in-process)
        return
    directory.mkdir(parents=True, exist_ok=True)
    handle = (directory / OWNER).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError(
            f"The checkpoint dir {directory} is in use by another running job ({holder}); two jobs writing one "
            "checkpoint dir destroy each other's checkpoints. Give this job its own checkpoint_dir (or "
            "checkpoint_s3_uri), or wait until the other job ends."
        ) from None
    handle.seek(0)
    handle.truncate()
    owner = {"job": env.job_name, "host": socket.gethostname(), "pid": os.getpid(), "since": time.ctime()}
    handle.write(json.dumps(owner))
    handle.flush()
    _held[directory.resolve()] = handle
