"""Checkpoints that are complete or absent, and where training resumes from.

A checkpoint counts as complete only when sm_train's manifest (written after Trainer finished every file) lists
files that are all present with their sizes, its trainer state, weights, optimizer and scheduler read back (FSDP and
DeepSpeed layouts: sharded.py), and its random states are there.
SageMaker restores the checkpoint dir from S3 before every attempt, so a checkpoint cut off by a spot interruption
(killed mid-write, or only partly uploaded) can be there: it is set aside, never resumed from.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sm_train import sharded
from sm_train.errors import ConfigError
from sm_train.files import archive_problem, file_sizes, size_problem, write_atomically

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")
STATE_FILE = "trainer_state.json"
MANIFEST = "sm_train_checkpoint.json"
INCOMPLETE_DIR = "incomplete"  # where torn checkpoints are moved aside (not named checkpoint-*)
SUPERSEDED_DIR = "superseded"  # where resume=never moves an earlier run's checkpoints (kept, never deleted)
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", sharded.ADAPTER_WEIGHTS)
TRAINING_STATE = ("optimizer.pt", "scheduler.pt")
ADAPTER_CONFIG = "adapter_config.json"  # beside adapter_model.safetensors: peft reads the adapter's shape from it


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
        found = json.loads((path / MANIFEST).read_text()) if (path / MANIFEST).is_file() else {}
        wrong = size_problem(path, found["files"]) if found else None
        if wrong:
            return wrong
        json.loads((path / STATE_FILE).read_text())
        rngs = list(path.glob("rng_state*.pth"))
        kind = sharded.layout(path)
        wrong = sharded.problem(path, kind, found.get("world_size", len(rngs))) if kind else _plain_problem(path)
        if wrong:
            return wrong
        if not rngs:  # without it the resumed data order and dropout differ
            return "rng_state.pth is missing"
    except (OSError, ValueError, KeyError, struct.error, pickle.UnpicklingError) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    return None


def _plain_problem(path: Path) -> str | None:
    """A checkpoint of one unsharded model: its weights, optimizer.pt and scheduler.pt."""
    weights = [path / name for name in WEIGHTS if (path / name).is_file()]
    if not weights:
        return "no model weights"
    if weights[0].suffix == ".safetensors" and not _safetensors_ok(weights[0]):
        return f"{weights[0].name} is truncated"
    if weights[0].name == sharded.ADAPTER_WEIGHTS and not (path / ADAPTER_CONFIG).is_file():
        return f"{ADAPTER_CONFIG} is missing (the adapter's settings, read with its weights)"
    return archive_problem(path, list(TRAINING_STATE))


def write_manifest(path: Path, world_size: int = 1, run: dict | None = None) -> None:
    """Mark a checkpoint complete: every file and its size, written atomically after all of them, and the settings
    that decide the run's trajectory (trajectory.identity)."""
    files = file_sizes(path)
    files.pop(MANIFEST, None)
    manifest = {"files": files, "world_size": world_size, "written": time.time(), "run": run}
    write_atomically(path / MANIFEST, manifest)


def manifest(path: Path) -> dict:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


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


def _set_aside(path: Path, kind: str, reason: str, folder: str = INCOMPLETE_DIR) -> None:
    """Out of the way (Trainer would otherwise write into it); `incomplete` is emptied at the next good save."""
    target = path.parent / folder / f"{path.name}-{int(time.time())}"
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


def short_error(error: BaseException) -> str:
    """The error's type and first line, without the advice torch's unpickler goes on to give (weights_only=False,
    which a job must never do with files restored from S3)."""
    lines = str(error).strip().splitlines() or [""]
    text = lines[0].split(" This file can still be loaded")[0]
    if "weights_only" in text:
        text = text[: text.index("weights_only")].rsplit(". ", 1)[0]
    return f"{type(error).__name__}: {text[:300]}"


def load_problem(path: Path, model: Any) -> str | None:
    """Why Trainer could not load this complete checkpoint into `model`, checked with pickle-safe loads only: the
    weights' names and shapes against the model's (from model.safetensors, a LoRA checkpoint's
    adapter_model.safetensors, or an FSDP checkpoint's metadata), the optimizer and scheduler as torch archives
    (memory-mapped)."""
    import torch

    kind = sharded.layout(path)
    weights = path / (f"{sharded.FSDP_MODEL}_0" if kind == sharded.FSDP_SHARDED else "model.safetensors")
    if not kind and not weights.exists() and (path / sharded.ADAPTER_WEIGHTS).exists():
        weights = path / sharded.ADAPTER_WEIGHTS
    try:
        wrong = None if model is None or not weights.exists() else sharded.weights_problem(weights, model)
    except Exception as e:  # noqa: BLE001 - any failure to load here is one Trainer would hit
        return f"{weights.name} does not load ({short_error(e)})"
    if wrong:
        return wrong
    for name in sharded.torch_files(path, kind) if kind else TRAINING_STATE:
        try:
            torch.load(path / name, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # noqa: BLE001
            return f"{name} does not load ({short_error(e)})"
    return None


def supersede(directory: Path) -> None:
    """resume=never: an earlier run's checkpoints are moved aside (kept; delete them yourself when done)."""
    for _, path in checkpoints(directory):
        _set_aside(path, "earlier run's", "resume=never", SUPERSEDED_DIR)


def resolve_resume(
    resume: str,
    directory: Path,
    *,
    main_process: bool = True,
    everywhere: Callable[[list[int]], list[int]] | None = None,
    usable: Callable[[Path], str | None] | None = None,
) -> str | None:
    """`auto` -> the newest complete and loadable checkpoint or None (a fresh start, said quietly); `never` -> None,
    an earlier run's checkpoints moved aside; anything else must be a complete and loadable checkpoint.

    `everywhere` narrows the steps to those complete on every process: with several hosts each keeps its own copy,
    and a spot loss can cut one host's newest. Newer ones are then set aside: training redoes those steps and
    writes them again. `usable` says why a complete checkpoint does not load (checked on the main process); such a
    checkpoint is set aside like a torn one and the next older one is tried. All processes take the same turns
    through the loop (each turn is one `everywhere` call), so they agree on the step.
    """
    if resume == "never":
        if main_process:
            supersede(directory)
        return None
    if resume != "auto":
        path = Path(resume)
        reason = problem(path) if path.is_dir() else "it does not exist"
        reason = reason or (usable(path) if usable else None)
        if reason:
            raise ConfigError(
                f"resume={resume!r} is not a usable checkpoint: {reason}. Use auto, never or a checkpoint-N path."
            )
        logger.info("resuming from %s", path)
        return str(path)
    complete = dict(set_aside_incomplete(directory) if main_process else complete_checkpoints(directory))
    steps, checked = sorted(complete), set()
    while True:
        common = everywhere(steps) if everywhere else steps
        chosen = common[-1] if common else None
        if chosen is None or chosen in checked:
            break
        checked.add(chosen)
        reason = usable(complete[chosen]) if usable and main_process else None
        if reason:
            _set_aside(complete[chosen], "unloadable", reason)
            steps.remove(chosen)
            logger.warning("resuming from the next older complete checkpoint instead, if there is one")
    for step, path in complete.items():
        if main_process and path.exists() and (chosen is None or step > chosen):
            _set_aside(path, "newer", "not complete on every host")
    if chosen is None:
        if complete:
            logger.warning(
                "no usable checkpoint is complete on every host (here: %s): starting afresh", sorted(complete)
            )
        return None
    logger.info("resuming from %s", complete[chosen])
    return str(complete[chosen])


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
