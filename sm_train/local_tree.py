"""The /opt/ml-shaped trees `local` and `check` run jobs in: what they are built from, how a rerun changes them, and
which folders are sm_train's own.

A tree sm_train made holds a marker at its root, `.sm_train-tree`: a JSON object with the tree format's `version`
(1) and a note for whoever finds it. docker/run_local.sh writes and reads the same file, and the same records of
where the tree's inputs live: `.sm_train-channels/NAME` (a link to channel NAME's folder or file) and
`.sm_train-checkpoints` (a link to a checkpoint dir outside the tree). Only in a marked tree does sm_train move or
delete anything: its own channel links, and model/ and output/ as local_rerun.py replaces them.

A root may be a new folder (made and marked), an empty one (marked), or a marked tree (reused). Anything else is
refused: sm_train never deletes or overwrites files it did not write. Trees made before the marker existed are
recognised by holding nothing but a tree's layout and a job's outputs (see `_not_a_trees`), and are then marked.

A rerun starts from what the tree holds: its hyperparameters, channels and checkpoint dir; what the request gives
replaces that part only (`--name null` removes a hyperparameter, `--channel NAME=null` a channel).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sm_train.dialects import NO_VALUE, argv_items, normalize_key
from sm_train.errors import UserError

MARKER = ".sm_train-tree"
MARKER_TEXT = (
    '{"version": 1, "note": "an /opt/ml tree sm_train made: a run that writes a model replaces model/ and output/, '
    'checkpoints/ are kept"}\n'
)  # run_local.sh writes the same line
CHANNELS = ".sm_train-channels"  # NAME -> the channel's folder or file (run_local.sh mounts them from here)
CHECKPOINTS = ".sm_train-checkpoints"  # -> a checkpoint dir outside the tree (--checkpoints)
CONTAINER_CHECKPOINTS = "/opt/ml/checkpoints"  # run_local.sh's checkpointconfig: the path inside the container
REMOVE = "null"  # `--name null`, `--channel NAME=null`: removes it (a hyperparameter's default applies again)
FIX = "Pass a new or empty folder as --root, or omit --root (a new tree under ~/.cache/sm_train/runs/)."
# What an unmarked folder may hold and still be taken for a tree an earlier sm_train made: folder -> names in it.
EARLIER_LAYOUT = {
    "": ("input", "model", "output", "code", "checkpoints"),
    "input": ("config", "data"),
    "output": ("failure", "data"),
}


@dataclass(frozen=True)
class Request:
    """What `local` or `check` was asked: the tree's parts, and the hyperparameters given after `--`."""

    channels: dict[str, Path | None]  # None: remove the channel
    roots: tuple[Path, ...]
    checkpoints: Path | None
    arguments: tuple[str, ...]  # the hyperparameters as given after `--`

    @property
    def hyperparameters(self) -> list[tuple[str, Any]]:
        return argv_items(self.arguments)

    @property
    def builds(self) -> bool:
        """Anything given that the tree must hold; otherwise an existing tree runs as it is."""
        return bool(self.channels or self.arguments or self.checkpoints)


def merged_hyperparameters(saved: Mapping[str, Any], items: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """hyperparameters.json as SDK v3 and boto3 write it, the saved values changed by the given ones: each value the
    text given, typed by its field when the job parses it ('3.10' stays a run name, becomes a number for
    learning_rate); a flag without a value true, a repeated option a JSON list, `null` removes the key. A given name
    replaces the saved one spelt alike (dashes or underscores, any case)."""
    result = dict(saved)
    for key, value in items:
        name = key.lstrip("-")
        for old in [k for k in result if normalize_key(k) == normalize_key(name)]:
            del result[old]
        if value != REMOVE:
            result[name] = (
                "true" if value is NO_VALUE else json.dumps(value) if isinstance(value, list) else str(value)
            )
    return result


def is_marked(root: Path) -> bool:
    return (root / MARKER).is_file()


def is_tree(root: Path) -> bool:
    return (root / "input" / "config" / "hyperparameters.json").is_file()


def _not_a_trees(root: Path) -> Iterator[str]:
    """What an unmarked folder holds that no tree of an earlier sm_train would (relative paths; none: it is one).
    Such a tree holds the layout of EARLIER_LAYOUT and nothing else: JSON files in input/config, channel links in
    input/data (links, or folders of links: a file channel, or run_local.sh's empty mount points), and model/ and
    output/data/ either empty (a failed run's: the job removes what it added) or holding the all_results.json a
    finished run writes in both. code/ and checkpoints/ are never emptied: not looked into."""

    def entries(folder: str) -> list[Path]:
        path = root / folder
        return sorted(path.iterdir()) if path.is_dir() and not path.is_symlink() else []

    for folder, names in EARLIER_LAYOUT.items():
        for entry in entries(folder):
            a_file = f"{folder}/{entry.name}" == "output/failure"
            if entry.name not in names or entry.is_symlink() or entry.is_dir() == a_file:
                yield entry.relative_to(root).as_posix()
    for entry in entries("input/config"):
        if entry.suffix != ".json" or entry.is_symlink() or not entry.is_file():
            yield entry.relative_to(root).as_posix()
    for entry in entries("input/data"):
        if not entry.is_symlink() and not (entry.is_dir() and all(c.is_symlink() for c in entry.iterdir())):
            yield entry.relative_to(root).as_posix()
    for folder in ("model", "output/data"):
        if not (root / folder / "all_results.json").is_file():
            yield from (entry.relative_to(root).as_posix() for entry in entries(folder))


def check_root(root: Path, command: str) -> None:
    """Refuse a root that is a file, or a folder with files that sm_train did not write. Writes nothing."""
    if root.exists() and not root.is_dir():
        raise UserError(f"{command}: --root {root} is a file; the job's tree is a folder. {FIX}")
    if not root.is_dir() or is_marked(root) or next(root.iterdir(), None) is None:
        return
    found = list(itertools.islice(_not_a_trees(root), 4))
    if found:
        shown = ", ".join(found[:3]) + (" and more" if len(found) > 3 else "")
        raise UserError(
            f"{command}: --root {root} is not empty and is not a tree sm_train made (it has no {MARKER} file): found "
            f"{shown}. sm_train replaces a tree's model/ and output/ at each run, and it never deletes or overwrites "
            f"files it did not write. {FIX}"
        )


def _read_dict(path: Path) -> dict[str, Any]:
    """A config file's JSON object; {} when it is missing or not one."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _link(path: Path) -> Path | None:
    """Where a channel link of the tree points: input/data/NAME itself, or the one link in it (a file channel)."""
    if path.is_symlink():
        return Path(os.readlink(path))
    children = list(path.iterdir()) if path.is_dir() else []
    return Path(os.readlink(children[0])) if len(children) == 1 and children[0].is_symlink() else None


def saved_channels(root: Path) -> dict[str, Path | None]:
    """The tree's channels (inputdataconfig.json) and their folders or files: recorded, or where its links point;
    None: not known (a mount point of an earlier run_local.sh)."""
    names = _read_dict(root / "input" / "config" / "inputdataconfig.json")
    return {name: _link(root / CHANNELS / name) or _link(root / "input" / "data" / name) for name in names}


def saved_checkpoints(root: Path) -> Path:
    """The tree's checkpoint dir: recorded, or its checkpointconfig's (not run_local.sh's path in the container)."""
    if (root / CHECKPOINTS).is_symlink():
        return Path(os.readlink(root / CHECKPOINTS))
    local_path = _read_dict(root / "input" / "config" / "checkpointconfig.json").get("LocalPath")
    return Path(local_path) if local_path and local_path != CONTAINER_CHECKPOINTS else root / "checkpoints"


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _replace_link(link: Path, target: Path | None) -> None:
    if link.is_symlink():
        link.unlink()
    if target is not None:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)


def _link_channels(root: Path, channels: Mapping[str, Path]) -> None:
    """input/data/NAME -> the folder (or a folder holding a link to the file): nothing is copied. The links of an
    earlier run (and run_local.sh's empty mount points) are replaced; anything else there is refused."""
    data_dir = root / "input" / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for entry in data_dir.iterdir():
        if entry.is_symlink():
            entry.unlink()
        elif entry.is_dir() and all(child.is_symlink() for child in entry.iterdir()):
            shutil.rmtree(entry)
        else:
            raise UserError(f"{entry} is not a channel link sm_train made; use another --root.")
    for record in (root / CHANNELS).iterdir() if (root / CHANNELS).is_dir() else ():
        if record.name not in channels:
            record.unlink()
    for name, path in channels.items():
        _replace_link(root / CHANNELS / name, path)
        if path.is_dir():
            (data_dir / name).symlink_to(path, target_is_directory=True)
        else:
            (data_dir / name).mkdir()
            (data_dir / name / path.name).symlink_to(path)


def build_tree(root: Path, request: Request, command: str = "sm_train", base: Path | None = None) -> None:
    """The files SageMaker puts under /opt/ml before a job starts, for one host (algo-1), in a tree marked as
    sm_train's: the tree `base` holds (default: root itself; nothing, when new), with what the request gives
    replaced. `--root DIR -- --max_steps 900` keeps the other hyperparameters, the channels and the checkpoints."""
    base = base or root
    check_root(root, command)
    try:  # a file on the way (--root notes.txt/tree), or a folder this user may not write to
        root.mkdir(parents=True, exist_ok=True)
        if not is_marked(root):
            (root / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
    except OSError as error:
        raise UserError(
            f"{command}: cannot make the tree {root}: {error.strerror} ({error.filename}). {FIX}"
        ) from error
    config = root / "input" / "config"
    if request.arguments or base != root or not is_tree(root):
        saved = _read_dict(base / "input" / "config" / "hyperparameters.json")
        _write_json(config / "hyperparameters.json", merged_hyperparameters(saved, request.hyperparameters))
    if not (config / "resourceconfig.json").is_file():
        _write_json(config / "resourceconfig.json", {"current_host": "algo-1", "hosts": ["algo-1"]})
    channels = saved_channels(base) | request.channels
    unknown = sorted(name for name, path in channels.items() if path is None and name not in request.channels)
    if unknown:
        raise UserError(
            f"{command}: the tree {base} does not record where channel {', '.join(unknown)} comes from (an earlier "
            f"docker/run_local.sh made it); give it again: --channel {unknown[0]}=PATH."
        )
    kept = {name: path for name, path in channels.items() if path is not None}
    saved_config = _read_dict(base / "input" / "config" / "inputdataconfig.json")
    file_mode = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
    _write_json(config / "inputdataconfig.json", {name: saved_config.get(name, file_mode) for name in kept})
    _link_channels(root, kept)
    # As with checkpoint_s3_uri: the checkpoints stay between runs, so a run on the same tree resumes.
    checkpoints = request.checkpoints or saved_checkpoints(base)
    _write_json(config / "checkpointconfig.json", {"LocalPath": str(checkpoints)})
    _replace_link(root / CHECKPOINTS, checkpoints if checkpoints != base / "checkpoints" else None)
    if base == root:
        for name in ("model", "output/data", "code"):
            (root / name).mkdir(parents=True, exist_ok=True)
    else:  # a view of base with other settings (`check`): base's own model and output dirs, untouched
        for name in ("model", "output"):
            (root / name).symlink_to(base / name, target_is_directory=True)
        (root / "code").mkdir(exist_ok=True)
