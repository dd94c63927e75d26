"""A rerun in a local tree never costs the earlier model: model/ and output/ are replaced only by a run that writes a
model.

SageMaker starts each attempt with empty model and output dirs (and the failure file is opened with "x"), so a run
needs them empty. Before the run they are moved, whole, into the tree's `.sm_train-previous/` (`set_aside`); after it
(`settle`) they are deleted when the new run succeeded or wrote its model (model/all_results.json, written after the
model: a push to the Hub may still have failed), and otherwise put back, with the new run's failure file as
output/failure. So a rerun refused before training (the same-run rule, a typo) or stopped by a signal leaves the
earlier model and outputs as they were, and says why in output/failure. Moving is a rename inside the tree:
nothing is copied. An earlier `local` killed before it settled left `.sm_train-previous/`: it is settled first.
Only ever in a tree sm_train marked.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sm_train.errors import UserError
from sm_train.local_tree import FIX, MARKER, is_marked

PREVIOUS = ".sm_train-previous"
OUTPUTS = ("model", "output")


def wrote_model(root: Path) -> bool:
    """The run finished its model (the results are written right after it is saved)."""
    return (root / "model" / "all_results.json").is_file()


def _move(source: Path, target: Path) -> None:
    if source.is_symlink() or source.is_file():
        source.unlink()  # not a folder: nothing a job wrote
    elif source.exists():
        source.rename(target)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def set_aside(root: Path) -> None:
    """Before a run: the earlier model/ and output/ to .sm_train-previous/, and empty ones in their place."""
    if not is_marked(root):
        raise UserError(
            f"{root} is not a tree sm_train made (no {MARKER}): its model/ and output/ stay as they are. {FIX}"
        )
    previous = root / PREVIOUS
    try:
        if previous.exists():  # an earlier `local` ended before it settled its run
            settle(root, wrote_model(root))
        previous.mkdir()
        for name in OUTPUTS:
            _move(root / name, previous / name)
        (root / "model").mkdir()
        (root / "output" / "data").mkdir(parents=True)
    except OSError as error:
        raise UserError(
            f"cannot set {root}'s model/ and output/ aside for this run ({error.strerror}: {error.filename}); files "
            f"a container wrote as root need sudo to move, or pass a new --root."
        ) from error


def settle(root: Path, keep_new: bool) -> bool:
    """After a run: drop the earlier model and outputs (keep_new), or put them back with this run's failure file.
    True when earlier ones were put back (not merely empty folders)."""
    previous = root / PREVIOUS
    if not previous.is_dir():
        return False
    earlier = any(next(p.iterdir(), None) for p in (previous / "model", previous / "output" / "data") if p.is_dir())
    try:
        if keep_new:
            shutil.rmtree(previous)
            return False
        failure = root / "output" / "failure"
        if failure.is_file():
            failure.rename(previous / "failure")
        for name in OUTPUTS:
            _remove(root / name)  # a failed run's: the job already removed what it added
            if (previous / name).is_dir():
                (previous / name).rename(root / name)
        (root / "model").mkdir(exist_ok=True)
        (root / "output").mkdir(exist_ok=True)
        if (previous / "failure").is_file():
            (previous / "failure").replace(root / "output" / "failure")  # the earlier run's failure is older
        shutil.rmtree(previous)
    except OSError as error:
        raise UserError(
            f"cannot {'remove' if keep_new else 'put back'} the earlier run's model and outputs in {previous} "
            f"({error.strerror}: {error.filename}); files a container wrote as root need sudo."
        ) from error
    return earlier
