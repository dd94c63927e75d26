"""What SIGTERM and SIGINT do to a process, phase by phase; the one module that installs and restores signal handlers.
Each function here changes process-wide state (the handlers, or the process's life) and says so in its name.

- starting (cli, then runner until Trainer is built): stop at once, nothing to save (`interrupt_process_on_signal`);
- training through the final save: callbacks.SaveOrStop saves and stops at the end of a step, and the process exits
  anyway once the grace runs out (`save_or_stop_process_on_signal`);
- the `local` parent: the signals (and SIGHUP) passed on to the job it runs (`forward_process_signals`);
- once a signal stops the job, repeated ones are ignored to the end of the process (`ignore_process_signals`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sm_train.errors import Interrupted

if TYPE_CHECKING:
    from sm_train.callbacks import SaveOrStop

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def ignore_process_signals() -> None:
    """Once a signal is stopping the job, further ones are ignored to the end of the process: SageMaker, docker
    stop and impatient users repeat them, and the default action would kill the process by the signal (status -15,
    not 143) while it writes its failure file."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


@contextlib.contextmanager
def _process_handlers(
    handler: Callable[[int, Any], None], signums: Sequence[int], stopping: Callable[[], bool]
) -> Iterator[None]:
    """`handler` for `signums` during the block. After it, the previous handlers are back, unless `stopping()`: a
    signal is ending the process, and repeated ones stay ignored to its end."""
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        if stopping():
            ignore_process_signals()
        else:
            for signum, restored in previous.items():
                signal.signal(signum, restored)


@contextlib.contextmanager
def interrupt_process_on_signal(state: Callable[[], str]) -> Iterator[None]:
    """Until training runs: SIGTERM/SIGINT stop the job at once (Interrupted, exit 128 + the signal), with a failure
    reason ending in `state()`, what was and was not saved."""
    received: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        received.append(signum)
        ignore_process_signals()  # before the failure file is written on the way out
        raise Interrupted(f"Stopped by {signal.Signals(signum).name} {state()}", signum)

    with _process_handlers(stop, STOP_SIGNALS, lambda: bool(received)):
        yield


@contextlib.contextmanager
def save_or_stop_process_on_signal(
    stopper: SaveOrStop, on_give_up: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Training, the final evaluation and the final save: a signal asks `stopper` to save and stop (a signal after
    the last step lets the evaluation and save finish). If the process has not ended `stopper.grace` seconds later,
    it exits anyway (SageMaker sends SIGKILL 120 s after SIGTERM), after `on_give_up(reason)` (the failure file); a
    checkpoint cut short then is set aside on the next start."""

    def give_up(signum: int) -> None:
        reason = (
            f"Stopped by {signal.Signals(signum).name} after step {stopper.step}: saving and stopping did not finish "
            f"within sigterm_grace_seconds={stopper.grace:g}. A checkpoint cut off then is set aside on restart; the "
            "restarted job resumes from the newest complete checkpoint in the checkpoint dir."
        )
        logger.error(reason)
        if on_give_up is not None:
            on_give_up(reason)
        os._exit(128 + signum)

    def handle(signum: int, frame: Any) -> None:
        if stopper.signalled(signum):  # the first one: repeated ones change nothing
            timer = threading.Timer(stopper.grace, give_up, (signum,))
            timer.daemon = True
            timer.start()

    with _process_handlers(handle, STOP_SIGNALS, lambda: stopper.received is not None):
        yield


@contextlib.contextmanager
def forward_process_signals(child: subprocess.Popen, signums: Sequence[int]) -> Iterator[None]:
    """The `local` parent: each of `signums` is passed on to the job's process, which saves and stops as it would
    in SageMaker; this process waits for it to end. The previous handlers are back after the block."""

    def forward(signum: int, frame: Any) -> None:
        child.send_signal(signum)

    with _process_handlers(forward, signums, lambda: False):
        yield
