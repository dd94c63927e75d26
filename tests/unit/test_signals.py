"""signals.py: what SIGTERM/SIGINT do in each phase of a process (starting, training, the `local` parent), the handlers
back after each phase, and a stopping job surviving repeated signals; no other module installs a handler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sm_train import signals
from sm_train.callbacks import SaveOrStop
from sm_train.errors import Interrupted
from sm_train.signals import STOP_SIGNALS


@pytest.fixture(autouse=True)
def _handlers_put_back() -> Iterator[None]:
    before = {signum: signal.getsignal(signum) for signum in (*STOP_SIGNALS, signal.SIGHUP)}
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


def test_a_repeated_signal_does_not_kill_a_stopping_job() -> None:
    with pytest.raises(Interrupted) as stopped, signals.interrupt_process_on_signal(lambda: "while testing."):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert stopped.value.exit_code == 143
    assert str(stopped.value) == "Stopped by SIGTERM while testing."
    # The default action would end the process by the signal (status -15) before its failure file and exit 143.
    assert all(signal.getsignal(signum) == signal.SIG_IGN for signum in STOP_SIGNALS)
    os.kill(os.getpid(), signal.SIGTERM)  # ignored: the test process lives on


def test_handlers_are_restored_when_no_signal_came() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with signals.interrupt_process_on_signal(lambda: ""):
        assert signal.getsignal(signal.SIGTERM) != before
    assert signal.getsignal(signal.SIGTERM) == before


def test_after_a_signal_in_training_repeated_ones_are_ignored_to_the_end() -> None:
    stopper = SaveOrStop(grace=90)
    with signals.save_or_stop_process_on_signal(stopper):
        stopper.received = signal.SIGTERM  # what the handler records (without its grace timer)
    # Exiting the block (the save done, Interrupted on its way to the exit code) must not restore the default
    # action: a second SIGTERM would then end the process by the signal, not with 143.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    with signals.save_or_stop_process_on_signal(SaveOrStop(grace=90)):
        pass
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # no signal this time: what was there is back


def test_a_signal_in_training_asks_the_stopper_once_and_the_grace_ends_the_process(monkeypatch) -> None:
    exits: list[int] = []
    monkeypatch.setattr(signals.os, "_exit", exits.append)  # the grace timer's exit, recorded instead
    reasons: list[str] = []
    stopper = SaveOrStop(grace=0.2)
    stopper.step = 7
    with signals.save_or_stop_process_on_signal(stopper, reasons.append):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)  # repeated: changes nothing, starts no second timer
        time.sleep(0.1)
        assert stopper.received == signal.SIGINT and not exits  # stopping at the end of the step
        time.sleep(0.5)
    assert exits == [128 + signal.SIGINT]
    assert reasons == [
        "Stopped by SIGINT after step 7: saving and stopping did not finish within sigterm_grace_seconds=0.2. A "
        "checkpoint cut off then is set aside on restart; the restarted job resumes from the newest complete "
        "checkpoint in the checkpoint dir."
    ]


def test_the_local_parent_forwards_signals_to_the_job_then_restores_its_handlers() -> None:
    before = signal.getsignal(signal.SIGHUP)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with signals.forward_process_signals(child, (signal.SIGTERM, signal.SIGHUP)):
            os.kill(os.getpid(), signal.SIGHUP)  # would end this process: passed on instead
            assert child.wait(timeout=30) == -signal.SIGHUP
    finally:
        child.kill()
    assert signal.getsignal(signal.SIGHUP) == before


def test_only_signals_py_installs_handlers() -> None:
    package = Path(signals.__file__).parent
    installing = [
        path.name
        for path in package.rglob("*.py")
        if path.name != "signals.py" and ("signal.signal(" in path.read_text() or "os._exit(" in path.read_text())
    ]
    assert not installing, installing
