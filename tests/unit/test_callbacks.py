"""callbacks.py and progress.py: metric lines written whole by rank 0, progress a person can follow, and no host
work per training step."""

from __future__ import annotations

import io
import logging
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
from sm_train.progress import Facts, Progress, QuietBar, duration, progress_due
from sm_train.progress import callbacks as progress_callbacks


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


# --- no host work per training step that a bare loop does not do -------------------------------------------------
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
    monkeypatch.setattr(collective, "distributed", lambda: True)
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
    monkeypatch.setattr(collective, "distributed", lambda: True)
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


# --- progress a person can follow (progress.py) -------------------------------------------------------------------


def test_a_progress_line_waits_for_both_the_interval_and_one_percent_of_the_steps() -> None:
    # Fast steps: 1 % of the steps (100 of 10,000) comes first, the interval decides.
    assert not progress_due(steps=500, seconds=29.9, total_steps=10_000, interval=30)
    assert progress_due(steps=500, seconds=30, total_steps=10_000, interval=30)
    # Slow steps: the interval comes first, 1 % of the steps decides.
    assert not progress_due(steps=99, seconds=3600, total_steps=10_000, interval=30)
    assert progress_due(steps=100, seconds=3600, total_steps=10_000, interval=30)
    # A short run: at least one step apart.
    assert progress_due(steps=1, seconds=0, total_steps=10, interval=0)
    assert not progress_due(steps=0, seconds=99, total_steps=0, interval=0)


def test_durations_read_as_a_person_writes_them() -> None:
    assert [duration(s) for s in (0, 42.4, 130, 3599.6, 7500)] == ["0s", "42s", "2m10s", "1h00m", "2h05m"]


class FakeTrainer:
    """What Progress gets of a Trainer: the loss accumulator handed over after each step, as trainer_seam does (whose
    own hand-over tests/unit/test_trainer_seam.py checks in real training loops)."""

    def __init__(self, args: TrainingArguments, state: TrainerState, callback: Progress) -> None:
        self.args, self.state, self.callback, self.handed_over = args, state, callback, 0

    def _maybe_log_save_evaluate(self, tr_loss: torch.Tensor, *rest: object, **kwargs: object) -> None:
        self.callback.on_train_loss(self.args, self.state, tr_loss)
        self.handed_over += 1


def watch(
    args: TrainingArguments, state: TrainerState, clock: Clock, *, follow_logs: bool = False
) -> tuple[Progress, FakeTrainer]:
    callback = Progress(Facts({"train": 800, "eval": 80}, hosts=1, keep=2), follow_logs=follow_logs)
    callback.clock = clock
    return callback, FakeTrainer(args, state, callback)


def train_steps(callback: Progress, trainer: FakeTrainer, clock: Clock, count: int, loss: torch.Tensor) -> None:
    """Trainer's order after each optimizer step: on_step_end, then the loss handed over."""
    for _ in range(count):
        clock.now += 1.0
        trainer.state.global_step += 1
        trainer.state.epoch = trainer.state.global_step / 100
        callback.on_step_end(trainer.args, trainer.state, TrainerControl())
        trainer._maybe_log_save_evaluate(loss, None, None, None, 0, None, 0.0)


@pytest.fixture
def no_bar(tmp_path) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], disable_tqdm=True)


def test_the_progress_line_says_step_epoch_loss_speed_elapsed_and_eta(no_bar, caplog, monkeypatch) -> None:
    monkeypatch.setattr(Progress, "INTERVAL_SECONDS", 30.0)
    clock = Clock()
    state = TrainerState(max_steps=200, num_train_epochs=2, train_batch_size=8)
    callback, trainer = watch(no_bar, state, clock)
    with caplog.at_level(logging.INFO, logger="sm_train.progress"):
        callback.on_train_begin(no_bar, state, TrainerControl())
        train_steps(callback, trainer, clock, 29, torch.tensor(29 * 0.5))
        assert not [r for r in caplog.messages if r.startswith("step ")]  # 29 s: not yet
        train_steps(callback, trainer, clock, 1, torch.tensor(30 * 0.5))  # Trainer's sum over the 30 steps
    lines = [r for r in caplog.messages if r.startswith("step ")]
    # 1 s per step of 8 rows; the pace is measured after the first step.
    assert lines == ["step 30/200 (15%), epoch 0.30, loss 0.5, 8.0 samples/s, elapsed 30s, ETA 2m50s"]
    assert caplog.messages[:6] == [
        "training: 200 optimizer steps in 2 epochs",
        "data: train 800 examples, eval 80 examples",
        "global batch 8 (8 per device x 1 device x 1 accumulation step), 1 process on 1 host",
        "device cpu, precision fp32",
        f"checkpoints: every 500 steps to {no_bar.output_dir}, the newest 2 kept",
        "progress: a line every 30 s and at least 1% of the steps apart",
    ]
    assert trainer.handed_over == 30  # Trainer's own method still runs every step


def test_the_loss_is_the_mean_since_trainers_last_log(no_bar, caplog, monkeypatch) -> None:
    monkeypatch.setattr(Progress, "INTERVAL_SECONDS", 10.0)
    clock = Clock()
    state = TrainerState(max_steps=100, num_train_epochs=1, train_batch_size=8)
    callback, trainer = watch(no_bar, state, clock)
    callback.on_train_begin(no_bar, state, TrainerControl())
    train_steps(callback, trainer, clock, 4, torch.tensor(0.0))
    state.log_history.append({"loss": 2.0, "step": 4})
    callback.on_log(no_bar, state, TrainerControl(), logs={"loss": 2.0})  # Trainer logged and restarted its sum
    with caplog.at_level(logging.INFO, logger="sm_train.progress"):
        train_steps(callback, trainer, clock, 6, torch.tensor(6 * 0.25))
    assert "loss 0.25," in caplog.messages[-1] and caplog.messages[-1].startswith("step 10/100")


def test_resumed_runs_say_where_they_resume(no_bar, caplog) -> None:
    state = TrainerState(max_steps=100, num_train_epochs=1, train_batch_size=8, global_step=40)
    callback, _ = watch(no_bar, state, Clock())
    with caplog.at_level(logging.INFO, logger="sm_train.progress"):
        callback.on_train_begin(no_bar, state, TrainerControl())
    assert caplog.messages[0] == "training: 100 optimizer steps in 1 epoch, resuming at step 40 (60 left)"


def test_with_logging_steps_set_trainers_logs_are_the_cadence(no_bar, caplog, monkeypatch) -> None:
    monkeypatch.setattr(Progress, "INTERVAL_SECONDS", 0.0)
    clock = Clock()
    state = TrainerState(max_steps=100, num_train_epochs=1, train_batch_size=8)
    callback, trainer = watch(no_bar, state, clock, follow_logs=True)
    with caplog.at_level(logging.INFO, logger="sm_train.progress"):
        callback.on_train_begin(no_bar, state, TrainerControl())
        train_steps(callback, trainer, clock, 20, torch.tensor(1.0))
        assert not [r for r in caplog.messages if r.startswith("step ")]
        callback.on_log(no_bar, state, TrainerControl(), logs={"loss": 0.75, "learning_rate": 1e-5})
        callback.on_log(no_bar, state, TrainerControl(), logs={"eval_loss": 0.5})
    assert [r for r in caplog.messages if r.startswith("step ")] == [
        "step 20/100 (20%), epoch 0.20, loss 0.75, 8.0 samples/s, elapsed 20s, ETA 1m20s"
    ]
    assert [type(cb) for cb in progress_callbacks(no_bar, Facts({}), ())] == [Progress]  # no bar, no quiet bar
    assert progress_callbacks(no_bar, Facts({}), {"logging_steps"})[-1].follow_logs
    assert not progress_callbacks(no_bar, Facts({}), {"learning_rate"})[-1].follow_logs


def test_progress_lines_come_from_rank_zero_only(no_bar, caplog, monkeypatch) -> None:
    monkeypatch.setattr(Progress, "INTERVAL_SECONDS", 0.0)
    clock = Clock()
    state = TrainerState(max_steps=10, train_batch_size=8, is_world_process_zero=False)
    callback, trainer = watch(no_bar, state, clock)
    with caplog.at_level(logging.INFO, logger="sm_train.progress"):
        callback.on_train_begin(no_bar, state, TrainerControl())
        train_steps(callback, trainer, clock, 10, torch.tensor(1.0))
    assert caplog.messages == []


def test_on_a_terminal_the_bar_shows_progress_and_no_line_is_printed(tmp_path, caplog, monkeypatch) -> None:
    monkeypatch.setattr(Progress, "INTERVAL_SECONDS", 0.0)
    terminal = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], disable_tqdm=False)
    clock = Clock()
    state = TrainerState(max_steps=10, train_batch_size=8)
    callback, trainer = watch(terminal, state, clock)
    with caplog.at_level(logging.INFO, logger="sm_train.progress"):
        callback.on_train_begin(terminal, state, TrainerControl())
        train_steps(callback, trainer, clock, 10, torch.tensor(1.0))
    assert caplog.messages[0].startswith("training: 10 optimizer steps")  # the summary, once
    assert not [r for r in caplog.messages if r.startswith(("step ", "progress:"))]
    registered = progress_callbacks(terminal, Facts({}), ())
    assert [type(cb) for cb in registered] == [Progress, QuietBar]


def test_the_quiet_bar_prints_no_log_dict(tmp_path, capsys) -> None:
    bar = QuietBar()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], disable_tqdm=False)
    state = TrainerState(max_steps=4)
    bar.on_train_begin(args, state, TrainerControl())
    bar.on_step_end(args, TrainerState(max_steps=4, global_step=1), TrainerControl())
    bar.on_log(args, state, TrainerControl(), logs={"loss": 0.5, "learning_rate": 5e-05})
    bar.on_train_end(args, state, TrainerControl())
    captured = capsys.readouterr()
    assert "loss" not in captured.out + captured.err and "1/4" in captured.err


def test_progress_reads_the_loss_only_when_it_writes_a_line(monkeypatch, no_bar) -> None:
    """Per step a clock read; the loss accumulator is read (one device sync) only for a line."""
    monkeypatch.setattr(Progress, "INTERVAL_SECONDS", 30.0)
    loss = torch.tensor(1.0)
    counter = Counter(monkeypatch)
    clock = Clock()
    state = TrainerState(max_steps=100_000, train_batch_size=8)
    callback, trainer = watch(no_bar, state, clock)
    callback.on_train_begin(no_bar, state, TrainerControl())
    train_steps(callback, trainer, clock, 1000, loss)  # 1 s per step: 1 % of the steps (1000) apart
    assert counter.calls == {"item": 1}
