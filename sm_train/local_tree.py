"""The /opt/ml-shaped trees `local` and `check` run jobs in: what they are built from, how they are built, and which
folders are sm_train's own to empty.

A tree sm_train made holds a marker at its root, `.sm_train-tree`: a JSON object with the tree format's `version`
(1) and a note for whoever finds it. docker/run_local.sh writes and reads the same file. Only in a marked tree does
sm_train delete anything: model/ and output/ emptied as each run starts (`rotate`), and its own channel links in
input/data/; checkpoints/ are kept, so a rerun resumes.

A root may be a new folder (made and marked), an empty one (marked), or a marked tree (reused). Anything else is
refused: sm_train never deletes or overwrites files it did not write. Trees made before the marker existed are
recognised by holding nothing but a tree's layout and a job's outputs (see `_not_a_trees`), and are then marked.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sm_train.dialects import NO_VALUE, argv_items
from sm_train.errors import UserError

MARKER = ".sm_train-tree"
MARKER_TEXT = (
    '{"version": 1, "note": "an /opt/ml tree sm_train made: model/ and output/ are emptied at each run, '
    'checkpoints/ are kept"}\n'
)  # run_local.sh writes the same line
FIX = "Pass a new or empty folder as --root, or omit --root (a new tree under ./.sm_train/)."
# What an unmarked folder may hold and still be taken for a tree an earlier sm_train made: folder -> names in it.
EARLIER_LAYOUT = {
    "": ("input", "model", "output", "code", "checkpoints"),
    "input": ("config", "data"),
    "output": ("failure", "data"),
}


@dataclass(frozen=True)
class Request:
    """What `local` or `check` was asked: the tree's parts, and the hyperparameters given after `--`."""

    channels: dict[str, Path]
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


def hyperparameters_file(items: Sequence[tuple[str, Any]]) -> dict[str, str]:
    """hyperparameters.json as SDK v3 and boto3 write it: each value the text given, typed by its field when the job
    parses it ('3.10' stays a run name, becomes a number for learning_rate); a flag without a value true, a repeated
    option a JSON list."""
    return {
        key.lstrip("-"): "true" if value is NO_VALUE else json.dumps(value) if isinstance(value, list) else str(value)
        for key, value in items
    }


def is_marked(root: Path) -> bool:
    return (root / MARKER).is_file()


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
            f"{shown}. sm_train empties a tree's model/ and output/ at each run, and it never deletes or overwrites "
            f"files it did not write. {FIX}"
        )


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _link_channels(data_dir: Path, channels: Mapping[str, Path]) -> None:
    """input/data/<name> -> the folder (or a folder holding a link to the file): nothing is copied."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for entry in data_dir.iterdir():  # the links of an earlier run: this run's channels replace them
        if entry.is_symlink():
            entry.unlink()
        elif entry.is_dir() and all(child.is_symlink() for child in entry.iterdir()):
            shutil.rmtree(entry)
        else:
            raise UserError(f"{entry} is not a channel link sm_train made; use another --root.")
    for name, path in channels.items():
        if path.is_dir():
            (data_dir / name).symlink_to(path, target_is_directory=True)
        else:
            (data_dir / name).mkdir()
            (data_dir / name / path.name).symlink_to(path)


def build_tree(root: Path, request: Request, command: str = "sm_train") -> None:
    """The files SageMaker puts under /opt/ml before a job starts, for one host (algo-1), in a tree marked as
    sm_train's. In an existing tree only what the request gives is replaced: `--root DIR -- --max_steps 900` keeps
    the channels and checkpoints."""
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
    if request.arguments or not (config / "hyperparameters.json").is_file():
        _write_json(config / "hyperparameters.json", hyperparameters_file(request.hyperparameters))
    _write_json(config / "resourceconfig.json", {"current_host": "algo-1", "hosts": ["algo-1"]})
    if request.channels or not (config / "inputdataconfig.json").is_file():
        files = {
            name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"} for name in request.channels
        }
        _write_json(config / "inputdataconfig.json", files)
        _link_channels(root / "input" / "data", request.channels)
    if request.checkpoints or not (config / "checkpointconfig.json").is_file():
        # As with checkpoint_s3_uri: the checkpoints stay between runs, so a run on the same tree resumes.
        _write_json(config / "checkpointconfig.json", {"LocalPath": str(request.checkpoints or root / "checkpoints")})
    for name in ("model", "output/data", "code"):
        (root / name).mkdir(parents=True, exist_ok=True)


def rotate(root: Path) -> None:
    """Empty model/ and output/ as each SageMaker attempt starts (the failure file is never overwritten, so a rerun
    needs an empty output/); checkpoints/ are kept. Only ever in a tree sm_train marked."""
    if not is_marked(root):
        raise UserError(
            f"{root} is not a tree sm_train made (no {MARKER}): its model/ and output/ stay as they are. {FIX}"
        )
    for name in ("model", "output"):
        path = root / name
        try:
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path)
        except OSError as error:
            raise UserError(
                f"cannot empty {path} for this run ({error.strerror}: {error.filename}); remove it yourself (files a "
                f"container wrote as root need sudo), or pass a new --root."
            ) from error
    (root / "model").mkdir()
    (root / "output" / "data").mkdir(parents=True)
