"""archives.py: a model archive unpacked once, safely, into a scratch folder under TMPDIR."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from sm_train import archives
from sm_train.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def member(name: str, data: bytes = b"", **attributes: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attributes.items():
        setattr(info, key, value)
    return info, data


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w:gz") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


MODEL = [member("config.json", b'{"model_type": "bert"}'), member("model.safetensors", os.urandom(2048))]


def test_unpacks_once_and_reuses_the_folder(tmp_path: Path, scratch: Path, monkeypatch) -> None:
    archive = write_tar(tmp_path / "channel" / "model.tar.gz", MODEL)
    unpacked = archives.unpack(archive)
    assert unpacked.parent == scratch
    assert sorted(p.name for p in unpacked.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in scratch.iterdir() if p.name.startswith(".")] == []  # no half-unpacked sibling left
    with monkeypatch.context() as patch:
        patch.setattr(archives, "_extract", lambda *a: pytest.fail("unpacked a second time"))
        assert archives.unpack(archive) == unpacked
    os.utime(archive, ns=(0, 0))  # a changed archive (size or mtime): another folder
    assert archives.unpack(archive) != unpacked


def test_one_top_level_folder_is_the_model(tmp_path: Path, scratch: Path) -> None:
    archive = write_tar(tmp_path / "model.tar", [member("my-model", type=tarfile.DIRTYPE, mode=0o755)]
                        + [member(f"my-model/{i.name}", d) for i, d in MODEL], mode="w")  # fmt: skip
    assert archives.unpack(archive).name == "my-model"
    flat = write_tar(tmp_path / "flat.tar.gz", MODEL)
    assert archives.unpack(flat).parent == scratch
    # tar czf model.tar.gz -C folder . : members "./", "./config.json", ...
    dotted = [member(".", type=tarfile.DIRTYPE, mode=0o755)] + [member(f"./{i.name}", d) for i, d in MODEL]
    unpacked = archives.unpack(write_tar(tmp_path / "dotted.tar.gz", dotted))
    assert unpacked.parent == scratch and (unpacked / "config.json").is_file()


def test_which_archive_a_model_path_names(tmp_path: Path) -> None:
    channel = tmp_path / "channel"
    write_tar(channel / "output.tar.gz", [])
    assert archives.find(channel) == channel / "output.tar.gz"  # the one archive there
    write_tar(channel / "model.tar.gz", MODEL)
    assert archives.find(channel) == channel / "model.tar.gz"  # SageMaker's name first
    assert archives.find(channel / "model.tar.gz") == channel / "model.tar.gz"
    (channel / "config.json").write_text("{}")
    assert archives.find(channel) is None  # a saved model folder is used as it is
    assert archives.find(channel / "config.json") is None and archives.find(tmp_path / "missing") is None


UNSAFE: dict[str, tuple[list[tuple[tarfile.TarInfo, bytes]], str]] = {
    "parent path": ([member("../evil", b"x")], r"'../evil' climbs out"),
    "nested parent path": ([member("ok/../../evil", b"x")], r"climbs out"),
    "absolute path": ([member("/EVIL_ABSOLUTE/evil", b"x")], r"has an absolute path"),
    "absolute symlink": ([member("evil", type=tarfile.SYMTYPE, linkname="/etc")], r"link to an absolute path"),
    "symlink out": ([member("evil", type=tarfile.SYMTYPE, linkname="../../evil")], r"link pointing outside"),
    "hard link out": ([member("evil", type=tarfile.LNKTYPE, linkname="../evil")], r"link pointing outside"),
    "symlink chain": (
        [member("a", type=tarfile.SYMTYPE, linkname="."), member("a/evil", type=tarfile.SYMTYPE, linkname="..")],
        r"'a/evil' is a link pointing outside",
    ),
    "device": ([member("evil", type=tarfile.CHRTYPE, devmajor=1, devminor=3)], r"device file"),
    "fifo": ([member("evil", type=tarfile.FIFOTYPE)], r"device file, FIFO"),
}


@pytest.mark.parametrize("data_filter", [True, False], ids=["data filter", "own checks only"])
@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_members_are_refused_and_nothing_is_written(
    tmp_path: Path, scratch: Path, monkeypatch, case: str, data_filter: bool
) -> None:
    """The same refusals where Python's tarfile has the data filter and where it does not (Python before 3.10.12)."""
    if data_filter and not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python's tarfile has no data filter")
    monkeypatch.setattr(archives, "_DATA_FILTER", data_filter)
    members, problem = UNSAFE[case]
    archive = write_tar(tmp_path / "channel" / "model.tar.gz", MODEL + members)
    with pytest.raises(ConfigError, match=rf"model.tar.gz is not safe to unpack: member .*{problem}") as raised:
        archives.unpack(archive)
    assert "tar czf model.tar.gz" in str(raised.value)
    assert not [p for p in tmp_path.rglob("*evil*")], "nothing may be written for an unsafe member"
    assert not Path("/EVIL_ABSOLUTE").exists()
    assert [p.name for p in scratch.iterdir() if not p.name.endswith(".lock")] == []  # no folder kept, not even part


def test_the_own_checks_drop_special_modes_and_owners(tmp_path: Path, scratch: Path, monkeypatch) -> None:
    monkeypatch.setattr(archives, "_DATA_FILTER", False)
    archive = write_tar(tmp_path / "model.tar.gz", [member("run", b"#!/bin/sh\n", mode=0o6777, uid=4242)])
    written = (archives.unpack(archive) / "run").stat()
    assert written.st_mode & 0o7777 == 0o755 and written.st_uid == os.getuid()


def test_an_archive_larger_than_the_free_space_is_refused(tmp_path: Path, scratch: Path, monkeypatch) -> None:
    archive = write_tar(tmp_path / "model.tar.gz", [member("model.safetensors", os.urandom(1 << 20))])
    assert archives.unpack(archive).is_dir()  # fits
    monkeypatch.setattr(archives, "SPARE", archives.shutil.disk_usage(tmp_path).free - (64 << 10))  # 64 KiB left
    os.utime(archive, ns=(1, 1))  # another archive to the scratch folders
    with pytest.raises(ConfigError, match=r"model.tar.gz does not fit in the free space of .*sm_train-models.*TMPDIR"):
        archives.unpack(archive)
    assert len([p for p in scratch.iterdir() if p.is_dir()]) == 1  # the first one only


def test_an_absurd_compression_ratio_is_refused(tmp_path: Path, scratch: Path, monkeypatch) -> None:
    monkeypatch.setattr(archives, "RATIO_FLOOR", 0)
    random = write_tar(tmp_path / "random.tar.gz", [member("model.safetensors", os.urandom(1 << 20))])
    assert archives.unpack(random).is_dir()
    zeros = write_tar(tmp_path / "zeros.tar.gz", [member("model.safetensors", bytes(4 << 20))])
    with pytest.raises(ConfigError, match=r"zeros.tar.gz is not safe to unpack: it unpacks to more than 100 times"):
        archives.unpack(zeros)


def test_too_many_members_are_refused(tmp_path: Path, scratch: Path, monkeypatch) -> None:
    monkeypatch.setattr(archives, "MAX_MEMBERS", 2)
    assert archives.unpack(write_tar(tmp_path / "two.tar.gz", MODEL)).is_dir()
    with pytest.raises(ConfigError, match=r"holds more than 2 members"):
        archives.unpack(write_tar(tmp_path / "three.tar.gz", [*MODEL, member("vocab.txt", b"a")]))


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 2], lambda b: b"not a tar archive at all" * 40, lambda b: gzip.compress(b"junk" * 300)],
    ids=["cut off", "not an archive", "gzip of no tar"],
)
def test_a_damaged_archive_is_a_clear_error(tmp_path: Path, scratch: Path, damage: Callable[[bytes], bytes]) -> None:
    archive = write_tar(tmp_path / "model.tar.gz", MODEL)
    archive.write_bytes(damage(archive.read_bytes()))
    with pytest.raises(ConfigError, match=r"model.tar.gz is not a readable tar archive .*Upload it again"):
        archives.unpack(archive)
    assert [p.name for p in scratch.iterdir() if not p.name.endswith(".lock")] == []


def test_a_scratch_folder_of_another_kind_is_refused(tmp_path: Path, scratch: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    scratch.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ConfigError, match=r"sm_train-models is a link or belongs to another user.*TMPDIR"):
        archives.unpack(write_tar(tmp_path / "model.tar.gz", MODEL))


UNPACK = """
import logging, sys, pathlib
logging.basicConfig(level=logging.INFO, format="%(message)s")
from sm_train import archives
print(archives.unpack(pathlib.Path(sys.argv[1])))
"""


def test_processes_of_one_job_unpack_it_once(tmp_path: Path, scratch: Path) -> None:
    """torchrun starts one process per GPU, and each resolves the model path at once: one unpacks, the others wait
    and use its folder."""
    archive = write_tar(tmp_path / "model.tar.gz", [*MODEL, member("big.bin", os.urandom(4 << 20))])
    env = {**os.environ, "TMPDIR": str(scratch.parent), "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen([sys.executable, "-c", UNPACK, str(archive)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]  # fmt: skip
    results = [process.communicate(timeout=120) for process in processes]
    assert all(process.returncode == 0 for process in processes), results
    assert len({out.strip() for out, _ in results}) == 1
    logged = [line for _, err in results for line in err.splitlines()]
    assert sum(line.startswith("unpacked ") for line in logged) == 1, logged
    assert sum(" was unpacked before: using " in line for line in logged) == 3, logged
    folders = [p for p in scratch.iterdir() if not p.name.endswith(".lock")]
    assert folders == [Path(results[0][0].strip())]
