"""Folders whose completeness is checked by their files' sizes (checkpoints, the tokenized cache: S3 restores files in
any order, and a cut-off write leaves some short or missing) or by their archives being readable, JSON written
atomically, and the folders a job writes proven writable before it starts."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from sm_train.errors import UserError

FIXES = {
    "the model dir": "SM_MODEL_DIR",
    "the output dir": "SM_OUTPUT_DATA_DIR",
    "the checkpoint dir": "the checkpoint_dir hyperparameter (or the estimator's checkpoint_local_path)",
}


def _unwritable(what: str, directory: Path, detail: str) -> UserError:
    fix = FIXES.get(what, "its setting")
    return UserError(
        f"Cannot write to {what} {directory} ({detail}); the job would find out only after training. Make it "
        f"writable, or point {fix} at a writable folder."
    )


def require_writable(directories: Mapping[str, Path]) -> None:
    """Each folder (by role) created when missing and written to once, before any data is read: a model dir that
    cannot be written was found only after training and evaluation."""
    for what, directory in directories.items():
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".sm_train-write-check-"):
                pass
        except OSError as e:
            raise _unwritable(what, directory, f"{type(e).__name__}: {e.strerror or e}") from e


def writable_problem(what: str, directory: Path) -> str | None:
    """The same question answered without writing anything (`check`): the nearest existing folder must allow it."""
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return str(_unwritable(what, directory, f"{existing} is not a folder"))
    if not os.access(existing, os.W_OK | os.X_OK):
        return str(_unwritable(what, directory, f"{existing} is not writable by this user"))
    return None


def file_sizes(root: Path) -> dict[str, int]:
    """Every file below root and its size (what a complete copy must have; S3 restores files in any order)."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def size_problem(root: Path, sizes: dict[str, int]) -> str | None:
    for name, size in sizes.items():
        if not (root / name).is_file() or (root / name).stat().st_size != size:
            return f"{name} is missing or has the wrong size"
    return None


def archive_problem(root: Path, names: list[str]) -> str | None:
    """The first of these torch archives (zip files) that is missing or unreadable."""
    for name in names:
        if not zipfile.is_zipfile(root / name):
            return f"{name} is missing or unreadable"
    return None


def write_atomically(path: Path, content: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content))
    os.replace(tmp, path)
