"""Checkpoints that are complete or absent, and where training resumes from.

A checkpoint counts as complete only when sm_train's manifest (written after Trainer finished every file) lists
files that are all present with their sizes, its trainer state, weights, optimizer and scheduler read back, and its
random states are there.
SageMaker restores the checkpoint dir from S3 before every attempt, so a checkpoint cut off by a spot interruption
(killed mid-write, or only partly uploaded) can be there: it is set aside, never resumed from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from sm_train.errors import ConfigError

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")
STATE_FILE = "trainer_state.json"
MANIFEST = "sm_train_checkpoint.json"
INCOMPLETE_DIR = "incomplete"  # where torn checkpoints are moved aside (not named checkpoint-*)
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors")
TRAINING_STATE = ("optimizer.pt", "scheduler.pt")


def _safetensors_ok(path: Path) -> bool:
    """The header parses and the file is as long as the header says (a truncated copy is not)."""
    with path.open("rb") as f:
        header_length = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_length))
    ends = [t["data_offsets"][1] for name, t in header.items() if name != "__metadata__"]
    return path.stat().st_size >= 8 + header_length + max(ends, default=0)


def problem(path: Path) -> str | None:
    """Why the checkpoint at `path` cannot be resumed from, or None when it is complete."""
    try:
        manifest_path = path / MANIFEST
        if manifest_path.is_file():
            wrong = size_problem(path, json.loads(manifest_path.read_text())["files"])
            if wrong:
                return wrong
        json.loads((path / STATE_FILE).read_text())
        weights = [path / name for name in WEIGHTS if (path / name).is_file()]
        if not weights:
            return "no model weights"
        if weights[0].suffix == ".safetensors" and not _safetensors_ok(weights[0]):
            return f"{weights[0].name} is truncated"
        for name in TRAINING_STATE:
            if not zipfile.is_zipfile(path / name):
                return f"{name} is missing or unreadable"
        if not any(path.glob("rng_state*.pth")):  # without it the resumed data order and dropout differ
            return "rng_state.pth is missing"
    except (OSError, ValueError, KeyError, struct.error) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    return None


def file_sizes(root: Path) -> dict[str, int]:
    """Every file below root and its size (what a complete copy must have; S3 restores files in any order)."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def size_problem(root: Path, sizes: dict[str, int]) -> str | None:
    for name, size in sizes.items():
        if not (root / name).is_file() or (root / name).stat().st_size != size:
            return f"{name} is missing or has the wrong size"
    return None


def write_atomically(path: Path, content: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content))
    os.replace(tmp, path)


def write_manifest(path: Path, world_size: int = 1) -> None:
    """Mark a checkpoint complete: every file and its size, written atomically after all of them."""
    files = file_sizes(path)
    files.pop(MANIFEST, None)
    write_atomically(path / MANIFEST, {"files": files, "world_size": world_size, "written": time.time()})


def saved_world_size(path: Path) -> int | None:
    try:
        return json.loads((path / MANIFEST).read_text()).get("world_size")
    except (OSError, ValueError):
        return None


def checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """checkpoint-N folders, oldest first."""
    if not directory.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in directory.iterdir() if (m := CHECKPOINT_RE.fullmatch(p.name)) and p.is_dir()
    ]
    return sorted(found)


def complete_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """The complete checkpoint-N folders with their steps, oldest first."""
    return [(step, path) for step, path in checkpoints(directory) if problem(path) is None]


def _set_aside(path: Path, kind: str, reason: str) -> None:
    """Out of the way (Trainer would otherwise write into it), kept until the next good save."""
    target = path.parent / INCOMPLETE_DIR / f"{path.name}-{int(time.time())}"
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.warning("skipping %s checkpoint %s (%s); moved to %s", kind, path, reason, target)
    path.rename(target)


def set_aside_incomplete(directory: Path) -> list[tuple[int, Path]]:
    """Move torn checkpoints out of the way; return the complete ones with their steps."""
    complete = []
    for step, path in checkpoints(directory):
        reason = problem(path)
        if reason is None:
            complete.append((step, path))
        else:
            _set_aside(path, "incomplete", reason)
    return complete


def resolve_resume(
    resume: str,
    directory: Path,
    *,
    main_process: bool = True,
    everywhere: Callable[[list[int]], list[int]] | None = None,
) -> str | None:
    """`auto` -> the newest complete checkpoint or None (a fresh start, said quietly); `never` -> None;
    anything else must be a complete checkpoint.

    `everywhere` narrows the complete steps to those complete on every process: with several hosts each keeps its
    own copy, and a spot loss can cut one host's newest. Newer ones are then set aside: training redoes those steps
    and writes them again.
    """
    if resume == "never":
        return None
    if resume == "auto":
        complete = set_aside_incomplete(directory) if main_process else complete_checkpoints(directory)
        steps = [step for step, _ in complete]
        common = everywhere(steps) if everywhere else steps
        for step, path in complete:
            if main_process and (not common or step > common[-1]):
                _set_aside(path, "newer", "not complete on every host")
        if not common:
            if steps:
                logger.warning("no checkpoint is complete on every host (here: %s): starting afresh", steps)
            return None
        chosen = directory / f"checkpoint-{common[-1]}"
        logger.info("resuming from %s", chosen)
        return str(chosen)
    path = Path(resume)
    reason = problem(path) if path.is_dir() else "it does not exist"
    if reason:
        raise ConfigError(
            f"resume={resume!r} is not a usable checkpoint: {reason}. Use auto, never or a checkpoint-N path."
        )
    logger.info("resuming from %s", path)
    return str(path)


def rotate(directory: Path, keep: int | None, best: str | None) -> None:
    """Delete complete checkpoints beyond the newest `keep` (never the best one) and set-aside torn ones.

    Runs after the newest checkpoint is marked complete, so it can never remove the one a restart would need.
    SageMaker deletes in S3 what is deleted here.
    """
    shutil.rmtree(directory / INCOMPLETE_DIR, ignore_errors=True)
    if not keep:
        return
    for _, path in complete_checkpoints(directory)[:-keep]:
        if best is None or Path(best).resolve() != path.resolve():
            shutil.rmtree(path, ignore_errors=True)
            logger.info("deleted old checkpoint %s (save_total_limit=%d)", path, keep)
