"""callbacks.py: metric lines written whole by rank 0, and no host work per training step (#9)."""

from __future__ import annotations

import io
import signal
import threading
from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist
from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import CallbackHandler

from sm_train import collective
from sm_train.callbacks import CheckpointKeeper, MetricLines, NoStepPastTheEnd, SaveOrStop


class CountingStream(io.StringIO):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_callback_writes_one_event_in_one_write(monkeypatch, tmp_path) -> None:
    stream = CountingStream()
    monkeypatch.setattr("sys.stdout", stream)
    state = TrainerState()
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    MetricLines().on_log(args, state, TrainerControl(), logs={"loss": 0.5, "learning_rate": 5e-05, "epoch": 1.0})
    assert stream.writes == 1
    assert stream.getvalue().count("\n") == 3 and "\r" not in stream.getvalue()


def test_callback_is_silent_off_rank_zero(monkeypatch, tmp_path) -> None:
    stream = CountingStream()
    monkeypatch.setattr("sys.stdout", stream)
    state = TrainerState(is_world_process_zero=False)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    MetricLines().on_log(args, state, TrainerControl(), logs={"loss": 0.5})
    assert stream.getvalue() == ""


# --- no host work per training step that a bare loop does not do (#9) -------------------------------------------
# sm_train's callbacks make no collective, tensor or device sync per step in one process, and a distributed job
# agrees on saving and stopping at check steps only, the same steps on every process. Counts, never timings.


class Counter:
    """Counts calls of what a per-step path must not do."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: dict[str, int] = {}
        for owner, name in (
            (dist, "all_reduce"),
            (dist, "barrier"),
            (dist, "all_gather_object"),
            (torch, "tensor"),
            (torch.Tensor, "tolist"),
            (torch.Tensor, "item"),
            (torch.cuda, "synchronize"),
        ):
            monkeypatch.setattr(owner, name, self._wrap(name, getattr(owner, name)))

    def _wrap(self, name: str, original):  # noqa: ANN001, ANN202
        def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.calls[name] = self.calls.get(name, 0) + 1
            return original(*args, **kwargs)

        return counted


@pytest.fixture(scope="module")
def args(tmp_path_factory: pytest.TempPathFactory) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path_factory.mktemp("out")), use_cpu=True, report_to=[])


class Clock:
    """A clock the test moves: `seconds_per_step` per step."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stopper(clock: Clock, save_every_minutes: float | None = None) -> SaveOrStop:
    callback = SaveOrStop(grace=90, save_every_minutes=save_every_minutes)
    callback.clock = clock
    return callback


def steps(
    callback: SaveOrStop, args: TrainingArguments, clock: Clock, count: int, seconds_per_step: float
) -> Iterator[tuple[int, TrainerControl]]:
    """Run on_train_begin, then on_step_end for steps 1..count; yields each step's control."""
    state = TrainerState()
    callback.on_train_begin(args, state, TrainerControl())
    for step in range(1, count + 1):
        clock.now += seconds_per_step
        state.global_step = step
        control = TrainerControl()
        callback.on_step_end(args, state, control)
        yield step, control


def test_one_process_makes_no_collective_tensor_or_sync_per_step(
    monkeypatch: pytest.MonkeyPatch, args: TrainingArguments
) -> None:
    """All of sm_train's callbacks through Trainer's per-step events, 1000 steps, timed saves on."""
    assert not collective.distributed()
    counter = Counter(monkeypatch)
    clock = Clock()
    save_or_stop = stopper(clock, save_every_minutes=60)
    callbacks = [MetricLines(), CheckpointKeeper(2), NoStepPastTheEnd(), save_or_stop]
    handler = CallbackHandler(callbacks, None, None, None, None)
    state, control = TrainerState(max_steps=1000), TrainerControl()
    handler.on_train_begin(args, state, control)
    saves = 0
    for step in range(1, 1001):
        clock.now += 0.01
        handler.on_step_begin(args, state, control)
        handler.on_pre_optimizer_step(args, state, control)
        handler.on_optimizer_step(args, state, control)
        state.global_step = step
        control = handler.on_step_end(args, state, control)
        saves += control.should_save
        control.should_save = False
    assert counter.calls == {}
    assert saves == 0  # 10 s of training: no 60-minute save due


def test_one_process_acts_on_a_signal_at_the_very_next_step(args: TrainingArguments) -> None:
    clock = Clock()
    callback = stopper(clock)
    for step, control in steps(callback, args, clock, 20, seconds_per_step=0.01):
        assert control.should_save == control.should_training_stop == (step == 8)
        if step == 7:
            callback.received = signal.SIGTERM  # what the handler records, during step 8
        if step == 8:
            break
    assert callback.stopped_at == 8


def test_one_process_saves_on_time(args: TrainingArguments) -> None:
    clock = Clock()
    callback = stopper(clock, save_every_minutes=1)  # steps of 25 s: due every third step
    saved = []
    for step, control in steps(callback, args, clock, 9, seconds_per_step=25):
        if control.should_save:
            saved.append(step)
            callback.on_save(args, TrainerState(), control)
        assert not control.should_training_stop
    assert saved == [3, 6, 9]


@pytest.mark.parametrize(("seconds_per_step", "most"), [(0.001, 2), (0.01, 2), (0.1, 11), (5.0, 100)])
def test_distributed_agrees_every_second_not_every_step(
    monkeypatch: pytest.MonkeyPatch, args: TrainingArguments, seconds_per_step: float, most: int
) -> None:
    """100 steps: a collective at the first step, then about every CHECK_SECONDS (at most MAX_CHECK_STEPS apart,
    at least every step), each with one device sync."""
    monkeypatch.setattr(collective, "_distributed", lambda: True)
    reduced: list[torch.Tensor] = []
    monkeypatch.setattr(dist, "all_reduce", lambda tensor, op=None: reduced.append(tensor.clone()))
    counter = Counter(monkeypatch)
    clock = Clock()
    callback = stopper(clock, save_every_minutes=60)
    for _ in steps(callback, args, clock, 100, seconds_per_step):
        pass
    assert 1 <= len(reduced) <= most
    assert counter.calls["all_reduce"] == counter.calls["tolist"] == len(reduced)
    assert counter.calls.get("item", 0) == counter.calls.get("barrier", 0) == 0


def run_processes(
    monkeypatch: pytest.MonkeyPatch,
    args: TrainingArguments,
    world: int,
    signalled: dict[int, int],
    seconds_per_step: list[float],
    save_every_minutes: float | None = None,
    count: int = 300,
) -> list[dict[str, list[int]]]:
    """`world` simulated processes in threads that all_reduce for real (MAX, in lockstep), each with its own clock
    and pace; process r receives SIGTERM after its step signalled[r]. Per process: the steps it checked, saved and
    stopped at."""
    monkeypatch.setattr(collective, "_distributed", lambda: True)
    barrier = threading.Barrier(world)
    contributions: list[torch.Tensor | None] = [None] * world
    rank_of: dict[int, int] = {}

    def all_reduce(tensor: torch.Tensor, op: object = None) -> None:
        rank = rank_of[threading.get_ident()]
        contributions[rank] = tensor.clone()
        barrier.wait()
        tensor.copy_(torch.stack(contributions).amax(dim=0))  # type: ignore[arg-type]
        barrier.wait()

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    seen: list[dict[str, list[int]]] = [{"checked": [], "saved": [], "stopped": []} for _ in range(world)]

    def process(rank: int) -> None:
        rank_of[threading.get_ident()] = rank
        clock = Clock()
        callback = stopper(clock, save_every_minutes)
        for step, control in steps(callback, args, clock, count, seconds_per_step[rank]):
            if callback.checked_step == step:
                seen[rank]["checked"].append(step)
            if step == signalled.get(rank):
                callback.received = signal.SIGTERM
            if control.should_save:
                seen[rank]["saved"].append(step)
                callback.on_save(args, TrainerState(), control)
            if control.should_training_stop:
                seen[rank]["stopped"].append(step)
                break

    threads = [threading.Thread(target=process, args=(rank,)) for rank in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "the simulated processes deadlocked"
    return seen


def test_a_signal_to_one_process_saves_and_stops_every_process_at_the_same_check_step(
    monkeypatch: pytest.MonkeyPatch, args: TrainingArguments
) -> None:
    """Processes whose own clocks disagree (one twice as slow) still check at the same steps; a signal that reaches
    process 2 after step 37 is acted on by all at the first check step after it, with one checkpoint."""
    seen = run_processes(monkeypatch, args, 3, {2: 37}, seconds_per_step=[0.05, 0.1, 0.05])
    assert seen[0]["checked"] == seen[1]["checked"] == seen[2]["checked"]
    checks = seen[0]["checked"]
    assert checks[:3] == [1, 11, 21]  # paced by the slowest process: 0.1 s per step, one check per second
    stop = next(step for step in checks if step > 37)
    assert stop == 41
    for rank in range(3):
        assert seen[rank]["saved"] == seen[rank]["stopped"] == [stop]


def test_a_signal_between_checks_on_every_process_stops_them_together(
    monkeypatch: pytest.MonkeyPatch, args: TrainingArguments
) -> None:
    seen = run_processes(monkeypatch, args, 2, {0: 5, 1: 6}, seconds_per_step=[0.2, 0.2])
    assert seen[0]["checked"] == seen[1]["checked"] == [1, 6]  # 0.2 s per step: a check every 5 steps
    assert seen[0]["stopped"] == seen[1]["stopped"] == seen[0]["saved"] == seen[1]["saved"] == [6]


def test_timed_saves_ride_on_the_checks_and_happen_together(
    monkeypatch: pytest.MonkeyPatch, args: TrainingArguments
) -> None:
    """save_every_minutes=0.05 (3 s) with 0.1 s steps: due every 30 steps, decided at a check (every 10 steps)."""
    seen = run_processes(monkeypatch, args, 2, {}, seconds_per_step=[0.1, 0.1], save_every_minutes=0.05, count=100)
    assert seen[0]["saved"] == seen[1]["saved"]
    assert seen[0]["saved"] and all(step in seen[0]["checked"] for step in seen[0]["saved"])
    gaps = [b - a for a, b in zip([0, *seen[0]["saved"]], seen[0]["saved"], strict=False)]
    assert all(30 <= gap <= 40 for gap in gaps), gaps  # due after 30 steps, acted on by the next check
    assert not seen[0]["stopped"]


def _gloo_process(rank: int, port: int, signalled_after: int, results: object) -> None:
    """One process of a real two-process gloo group: 300 steps of ~2 ms; rank 1 receives SIGTERM after a step."""
    import time

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        reduces = 0
        original = dist.all_reduce

        def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            nonlocal reduces
            reduces += 1
            return original(*args, **kwargs)

        dist.all_reduce = counted  # type: ignore[assignment]
        args = TrainingArguments(output_dir="/tmp/unused", use_cpu=True, report_to=[])
        callback = SaveOrStop(grace=90)
        state = TrainerState()
        callback.on_train_begin(args, state, TrainerControl())
        stopped = None
        for step in range(1, 301):
            time.sleep(0.002)
            state.global_step = step
            control = TrainerControl()
            callback.on_step_end(args, state, control)
            if control.should_training_stop:
                assert control.should_save
                stopped = step
                break
            if rank == 1 and step == signalled_after:
                callback.received = signal.SIGTERM
        results.put((rank, stopped, reduces))  # type: ignore[attr-defined]
    finally:
        dist.all_reduce = original  # type: ignore[assignment]
        dist.destroy_process_group()


@pytest.mark.slow
def test_real_gloo_processes_stop_together_with_few_collectives() -> None:
    """Two real processes (gloo): the signal to one stops both at the same step, a check step after the signal,
    with a handful of collectives for all those steps."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_gloo_process, args=(rank, port, 30, results)) for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert all(process.exitcode == 0 for process in processes), [process.exitcode for process in processes]
    outcome = dict((rank, (stopped, reduces)) for rank, stopped, reduces in (results.get() for _ in range(2)))
    assert outcome[0][0] == outcome[1][0] is not None and outcome[0][0] > 30
    assert outcome[0][1] == outcome[1][1] < outcome[0][0] / 5


def test_after_a_signal_repeated_ones_are_ignored_to_the_end() -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        with SaveOrStop(grace=90) as stopper:
            stopper.received = signal.SIGTERM  # what _handle records (without its grace timer)
        # Exiting the block (the save done, Interrupted on its way to the exit code) must not restore the default
        # action: a second SIGTERM would then end the process by the signal, not with 143.
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        with SaveOrStop(grace=90):
            pass
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # no signal this time: what was there is back
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
