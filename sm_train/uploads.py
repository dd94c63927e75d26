"""What a job's source_dir should not carry: local run trees (models, checkpoints) and virtualenvs. The SageMaker SDK
uploads the whole folder (it honours no ignore file) and every job unpacks it into its code dir, so a job that finds
them there says so, naming them. Looked for two folders deep, at most MAX_FOLDERS folders: cheap in any tree.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sm_train.local_tree import MARKER

logger = logging.getLogger(__name__)

MAX_FOLDERS = 2000  # folders looked at, at most: a clone holds a few dozen at these depths
SHOWN = 6


def _folders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def clutter(code_dir: Path) -> list[str]:
    """Local run trees (a `.sm_train-tree` marker) and virtualenvs (`pyvenv.cfg`) one or two folders below
    code_dir, as paths relative to it, each with what it is."""
    found: list[str] = []
    level, looked = [code_dir], 0
    for _ in range(2):
        below: list[Path] = []
        for folder in level:
            for entry in _folders(folder):
                looked += 1
                if looked > MAX_FOLDERS:
                    return found
                name = entry.relative_to(code_dir).as_posix()
                if (entry / MARKER).is_file():
                    found.append(f"{name} (a local run tree)")
                elif (entry / "pyvenv.cfg").is_file():
                    found.append(f"{name} (a virtualenv)")
                else:
                    below.append(entry)
        level = below
    return found


def warn_uploaded_clutter(code_dir: Path) -> None:
    """One warning when the code dir (source_dir, as the training toolkit unpacked it) holds local run trees or
    virtualenvs."""
    found = clutter(code_dir) if code_dir.is_dir() else []
    if not found:
        return
    shown = ", ".join(found[:SHOWN]) + (f" and {len(found) - SHOWN} more" if len(found) > SHOWN else "")
    logger.warning(
        "source_dir (unpacked in %s) holds %s. They were uploaded to S3 with the code and unpacked into every job "
        "that uses it: point source_dir at a clean clone, or remove them first (make clean removes the venvs and "
        "any ./.sm_train runs; `local` keeps its runs in ~/.cache/sm_train/runs).",
        code_dir,
        shown,
    )
