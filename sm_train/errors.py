"""Errors the user can fix. Their message is the failure reason: what is wrong, where, and how to fix it."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


class UserError(Exception):
    """A problem with the job's input (hyperparameters, data, model path) rather than a bug."""


class ConfigError(UserError):
    """A hyperparameter is unknown, mistyped or inconsistent. `key`: the field it is about, when it is about one
    (`check` then sets that one aside and goes on checking the rest)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def require_at_least(minimum: int, unit: str = "", **values: float | None) -> None:
    """Hyperparameters (name=value) that must be at least minimum when set: ConfigError naming the first that is not.
    The one way sm_train says "must be at least N", for its own and every task's hyperparameters."""
    for name, value in values.items():
        if value is not None and value < minimum:
            raise ConfigError(f"Hyperparameter '{name}' must be at least {minimum}{unit}, got {value}.", key=name)


class DataError(UserError):
    """A channel, file, column or label is missing or malformed."""


class PushFailed(UserError):
    """Pushing to the Hub failed after the model dir and outputs were complete: the job fails, and keeps them."""


class Interrupted(BaseException):  # like KeyboardInterrupt: no library "except Exception" swallows it
    """The job stopped on a signal (after saving a checkpoint, when training had begun); the exit code is 128 + the
    signal number. signals.py says what each phase does on one."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


# How a full disk surfaces: OSError errno 28 (ENOSPC), or only as text in the wrappers of torch's zip writer
# ("[enforce fail at inline_container.cc:...] . unexpected pos", "file write failed") and safetensors (Rust's
# "os error 28", or its debug form "Os { code: 28, kind: StorageFull }").
DISK_FULL_SIGNS = (
    "No space left on device",
    "os error 28",
    "code: 28,",
    "Errno 28",
    "unexpected pos",
    "file write failed",
)


def is_disk_full(error: BaseException) -> bool:
    """errno 28 anywhere in the exception chain, or a wrapper's text that says so."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if any(sign in str(current) for sign in DISK_FULL_SIGNS):
            return True
        current = current.__cause__ or current.__context__
    return False


def disk_full_reason(error: BaseException, directories: dict[str, Path]) -> str | None:
    """What filled up and what to do, when `error` is a full disk. `directories`: what the job writes, by role."""
    if not is_disk_full(error):
        return None
    space = {}
    for what, path in directories.items():
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is not None:
            space[what] = (path, shutil.disk_usage(existing))
    if not space:
        return "Disk full (No space left on device). Raise the job's volume_size or lower save_total_limit."
    what, (path, usage) = min(space.items(), key=lambda item: item[1][1].free)
    return (
        f"Disk full: {what} {path} has {_size(usage.free)} free of {_size(usage.total)} ({type(error).__name__}). "
        "Raise the job's volume_size (the estimator's volume_size, in GB; the model and checkpoint dirs are on that "
        "volume), or lower save_total_limit to keep fewer checkpoints."
    )


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return f"{count} B"
