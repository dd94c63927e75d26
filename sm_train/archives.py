"""A model given as a tar archive (model.tar.gz, what a SageMaker job's S3 model URI delivers) unpacked safely into a
scratch folder: nothing written outside it, no links pointing out, no device files, bounded by the free space.

The scratch folder is <tempfile.gettempdir()>/sm_train-models/<digest of the archive's path, size and mtime>, so a
rerun reuses it; tempfile follows TMPDIR, so set TMPDIR in the job's environment to unpack on another volume. The
processes of one job (torchrun: one per GPU) take turns under a lock file, and the archive is unpacked into a
temporary sibling renamed into place when complete, so a half-unpacked folder is never used."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import logging
import lzma
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from sm_train.errors import ConfigError

logger = logging.getLogger(__name__)

NAMES = ("model.tar.gz", "model.tar")  # what SageMaker's model artifact is called, preferred over other archives
SUFFIXES = (".tar.gz", ".tgz", ".tar")
MAX_RATIO = 100  # unpacked bytes per archive byte: model weights barely compress, gzip's own limit is ~1000
RATIO_FLOOR = 256 << 20  # below this many unpacked bytes the ratio is not checked (small, repetitive text files)
MAX_MEMBERS = 100_000
SPARE = 256 << 20  # free space left on the scratch folder's file system after unpacking
_DATA_FILTER = hasattr(tarfile, "data_filter")  # Python 3.12, and 3.8.17 / 3.9.17 / 3.10.12 / 3.11.4 on
_FILTER_ERROR = getattr(tarfile, "FilterError", ())  # what the data filter raises, where it exists


def find(path: Path) -> Path | None:
    """The archive to unpack for a local model path: the path itself when it is an archive file, or the one archive
    in a folder without config.json (model.tar.gz or model.tar first)."""
    if path.is_file():
        return path if path.name.endswith(SUFFIXES) else None
    if not path.is_dir() or (path / "config.json").exists():
        return None
    for name in NAMES:
        if (path / name).is_file():
            return path / name
    found = [p for p in path.iterdir() if p.is_file() and p.name.endswith(SUFFIXES)]
    return found[0] if len(found) == 1 else None


def unpack(archive: Path) -> Path:
    """The folder holding the archive's files (its one top-level folder when it has only that), unpacked once."""
    stat = archive.stat()
    key = hashlib.blake2b(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode(), digest_size=8).hexdigest()
    root = Path(tempfile.gettempdir()) / "sm_train-models"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if root.is_symlink() or root.stat().st_uid != os.getuid():
        raise ConfigError(
            f"Cannot unpack {archive}: the scratch folder {root} is a link or belongs to another user. Set TMPDIR "
            "in the job's environment to a folder of your own."
        )
    target = root / key
    with _locked(root / f"{key}.lock"):
        if target.is_dir():
            logger.info("%s was unpacked before: using %s", archive, target)
        else:
            for stale in root.glob(f".{key}-*"):  # an attempt that died while unpacking (the lock is ours now)
                shutil.rmtree(stale, ignore_errors=True)
            partial = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
            try:
                count, size = _extract(archive, partial, shutil.disk_usage(root).free - SPARE)
                partial.rename(target)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            logger.info("unpacked %s (%d members, %.1f MB) into %s", archive, count, size / 1e6, target)
    return content_root(target)


def content_root(directory: Path) -> Path:
    """The archive's one top-level folder when everything is inside it (a folder packed by name), else the folder."""
    entries = [p for p in directory.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return directory


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process of this job to unpack the model (%s)", path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _extract(archive: Path, destination: Path, room: int) -> tuple[int, int]:
    """Every member checked before it is written; the archive is read once, front to back."""
    counted = [0, 0]
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _checked(tar, archive, destination, room, counted)
            if _DATA_FILTER:
                tar.extractall(destination, members=members, filter="data")
            else:
                tar.extractall(destination, members=members)
    except _FILTER_ERROR as e:  # what the checks above let through and the data filter did not
        raise _unsafe(archive, str(e)) from e
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as e:
        detail = f"{type(e).__name__}: {str(e).splitlines()[0].rstrip(':')}"
        raise ConfigError(
            f"{archive} is not a readable tar archive ({detail}): it may be cut off or not a tar file. Upload it "
            "again, or give the model's folder itself."
        ) from e
    return counted[0], counted[1]


def _checked(
    tar: tarfile.TarFile, archive: Path, destination: Path, room: int, counted: list[int]
) -> Iterator[tarfile.TarInfo]:
    real = os.path.realpath(destination)
    limit = max(RATIO_FLOOR, archive.stat().st_size * MAX_RATIO)
    for member in tar:
        problem = _problem(member, real)
        if problem:
            raise _unsafe(archive, f"member {member.name!r} {problem}")
        counted[0] += 1
        counted[1] += member.size if member.isreg() else 0
        if counted[0] > MAX_MEMBERS:
            raise _unsafe(archive, f"it holds more than {MAX_MEMBERS} members")
        if counted[1] > limit:
            raise _unsafe(
                archive,
                f"it unpacks to more than {MAX_RATIO} times its own size ({counted[1] / 1e6:.0f} MB so far from "
                f"{archive.stat().st_size / 1e6:.1f} MB), an absurd compression ratio for a model",
            )
        if counted[1] > room:
            raise ConfigError(
                f"{archive} does not fit in the free space of {destination.parent} (it unpacks to more than "
                f"{counted[1] / 1e9:.1f} GB; {max(room, 0) / 1e9:.1f} GB are free beyond {SPARE >> 20} MiB kept "
                "spare). Set TMPDIR in the job's environment to a folder on a volume with room, or give the job a "
                "larger volume (volume_size)."
            )
        if not _DATA_FILTER:  # what the data filter does: no special mode bits, no other owner
            member.mode = (member.mode & 0o755) | (0o700 if member.isdir() else 0o600)
            member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
        yield member


def _problem(member: tarfile.TarInfo, real: str) -> str | None:
    """What makes a member unsafe to write below `real` (links already unpacked are followed), or None."""
    if os.path.isabs(member.name) or member.name.startswith(("/", "\\")):
        return "has an absolute path"
    if ".." in Path(member.name).parts:
        return "climbs out of the archive's folder (..)"
    if not _inside(os.path.realpath(os.path.join(real, member.name)), real):
        return "would be written outside the archive's folder (through a link)"
    if member.issym() or member.islnk():
        if os.path.isabs(member.linkname):
            return f"is a link to an absolute path ({member.linkname})"
        base = os.path.join(real, os.path.dirname(member.name)) if member.issym() else real
        if not _inside(os.path.realpath(os.path.join(base, member.linkname)), real):
            return f"is a link pointing outside the archive's folder ({member.linkname})"
    elif not (member.isreg() or member.isdir()):
        return "is a device file, FIFO or other special file"
    return None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _unsafe(archive: Path, problem: str) -> ConfigError:
    return ConfigError(
        f"{archive} is not safe to unpack: {problem}. Nothing of it is used. Pack the model folder's own files "
        "(cd into the folder written by save_pretrained; tar czf model.tar.gz *), as a SageMaker job's model "
        "artifact is."
    )
