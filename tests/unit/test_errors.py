"""errors.py: a full disk is recognised wherever it surfaces, and its reason names the directory (what a signal does:
tests/unit/test_signals.py)."""

import errno
from pathlib import Path

from sm_train.errors import disk_full_reason, is_disk_full


def test_disk_full_is_recognised_wherever_it_surfaces(tmp_path: Path) -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    torch_writer = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2048 vs 1960")
    assert is_disk_full(torch_writer)
    try:
        try:
            raise OSError(errno.ENOSPC, "No space")
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as chained:
        assert is_disk_full(chained)
    assert is_disk_full(Exception("Error while serializing: IoError(Os { code: 28, kind: StorageFull })"))
    assert is_disk_full(Exception("SafetensorError: I/O error: No space left on device (os error 28)"))
    assert not is_disk_full(RuntimeError("CUDA out of memory"))
    reason = disk_full_reason(torch_writer, {"the checkpoint dir": tmp_path / "ckpt"})
    assert reason.startswith(f"Disk full: the checkpoint dir {tmp_path / 'ckpt'} has ")
    assert "volume_size" in reason and "save_total_limit" in reason
    assert disk_full_reason(RuntimeError("other"), {"x": tmp_path}) is None
