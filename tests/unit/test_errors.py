"""errors.py: a full disk is recognised wherever it surfaces, and its reason names the directory; a stopping job
survives a repeated signal."""

import errno
import os
import signal
import time
from pathlib import Path

import pytest

from sm_train.errors import STOP_SIGNALS, Interrupted, disk_full_reason, interrupt_on_signal, is_disk_full


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


def test_a_repeated_signal_does_not_kill_a_stopping_job() -> None:
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        with pytest.raises(Interrupted) as stopped, interrupt_on_signal(lambda: "while testing."):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert stopped.value.exit_code == 143
        # The default action would end the process by the signal (status -15) before its failure file and exit 143.
        assert all(signal.getsignal(signum) == signal.SIG_IGN for signum in STOP_SIGNALS)
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: the test process lives on
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_handlers_are_restored_when_no_signal_came() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with interrupt_on_signal(lambda: ""):
        assert signal.getsignal(signal.SIGTERM) != before
    assert signal.getsignal(signal.SIGTERM) == before
