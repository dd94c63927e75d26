"""What a person watching a job sees: a summary when training starts, progress lines where Trainer draws no bar
(CloudWatch), on a terminal tqdm's bar alone (each metric printed once, by callbacks.MetricLines), logs without ANSI
styles. Progress lines carry no `[metric]` and no `=`: no metric definition (metrics.py) reads one back."""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import ProgressCallback, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger(__name__)

STEP_FRACTION = 0.01  # progress lines at least 1 % of the steps apart
ANSI_STYLE = re.compile(r"\x1b\[[0-9;]*m")


def plain_text(record: logging.LogRecord) -> bool:
    """A logging filter: the record's message without ANSI styles (cli.setup_logging, where not a terminal)."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a malformed call: the handler reports it as logging does
        return True
    if "\x1b[" in message:
        record.msg, record.args = ANSI_STYLE.sub("", message), None
    return True


def progress_due(steps: int, seconds: float, total_steps: int, interval: float) -> bool:
    """Whether a progress line is due `steps` and `seconds` after the previous one (or the start of training): once
    both the interval and 1 % of the run's steps have passed, whichever is rarer."""
    return seconds >= interval and steps >= max(1, math.ceil(total_steps * STEP_FRACTION))


def duration(seconds: float) -> str:  # 42s, 2m10s, 1h05m
    minutes, secs = divmod(max(round(seconds), 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_line(
    step: int, total: int, epoch: float | None, loss: float | None, pace: float | None, batch: int, elapsed: float
) -> str:
    """One progress line; `pace`: seconds per optimizer step (None: not measured yet), `batch`: the global batch."""
    parts = [
        f"step {step}/{total} ({100 * step // max(total, 1)}%)",
        f"epoch {epoch:.2f}" if epoch is not None else "",
        f"loss {loss:.4g}" if loss is not None else "",
        f"{batch / pace:.1f} samples/s" if pace else "",
        f"elapsed {duration(elapsed)}",
        f"ETA {duration(max(total - step, 0) * pace)}" if pace is not None else "",
    ]
    return ", ".join(part for part in parts if part)


@dataclass(frozen=True)
class Facts:
    """What the start summary says that Trainer's state does not know."""

    examples: Mapping[str, int]  # model inputs per split, after filtering (question answering: context windows)
    hosts: int = 1
    keep: int | None = None  # checkpoints kept
    save_every_minutes: float | None = None


def global_batch(args: TrainingArguments, state: TrainerState) -> int:
    per_process = state.train_batch_size or args.train_batch_size  # Trainer's own (auto_find_batch_size may lower it)
    return per_process * args.gradient_accumulation_steps * args.world_size


def summary_lines(args: TrainingArguments, state: TrainerState, facts: Facts) -> list[str]:
    """The start summary, from Trainer's state at on_train_begin (steps and epochs as it computed them)."""
    step, total, batch = state.global_step, state.max_steps, global_batch(args, state)
    per_device, accumulation = args.per_device_train_batch_size, args.gradient_accumulation_steps
    devices = batch // max(per_device * accumulation, 1)
    device = str(args.device)
    if args.device.type == "cuda":
        import torch

        device += f" ({torch.cuda.get_device_name(args.device)})"
    precision = "bf16 mixed" if args.bf16 else "fp16 mixed" if args.fp16 else "fp32"
    return [
        f"training: {_count(total, 'optimizer step')} in {_count(state.num_train_epochs, 'epoch')}"
        + (f", resuming at step {step} ({total - step} left)" if step else ""),
        "data: " + ", ".join(f"{split} {count} examples" for split, count in facts.examples.items()),
        f"global batch {batch} ({per_device} per device x {_count(devices, 'device')} x "
        f"{_count(accumulation, 'accumulation step')}), {_count(args.world_size, 'process', 'es')} on "
        f"{_count(facts.hosts, 'host')}",
        f"device {device}, precision {precision}" + (", tf32 matmuls" if getattr(args, "tf32", None) else ""),
        f"checkpoints: {_checkpoints(args, state, facts)}",
    ]


def _count(count: int, word: str, plural: str = "s") -> str:
    return f"{count} {word}{plural * (count != 1)}"


def _checkpoints(args: TrainingArguments, state: TrainerState, facts: Facts) -> str:
    strategy = str(getattr(args.save_strategy, "value", args.save_strategy))
    schedule = {"steps": f"every {state.save_steps} steps", "epoch": "every epoch", "best": "at each best evaluation"}
    when = [schedule[strategy]] if strategy in schedule else []
    if facts.save_every_minutes:
        when.append(f"every {facts.save_every_minutes:g} minutes")
    if not when:
        return f"none on a schedule (save_strategy {strategy})"
    kept = f", the newest {facts.keep} kept" if facts.keep else ""
    return f"{' and '.join(when)} to {args.output_dir}{kept}"


class Progress(TrainerCallback):
    """The start summary, then progress lines while training, on rank 0, when Trainer draws no bar (disable_tqdm,
    which defaults to 'not a terminal'). Cadence: progress_due, INTERVAL_SECONDS; when the user set logging_steps
    (or logging_strategy), a line after each of Trainer's training logs instead, with the loss it logged.

    Per step a flag and a clock read, no host work or device sync (callbacks.SaveOrStop says why). The loss is the
    mean per step of Trainer's own on-device sum since its last log, which trainer_seam.TrainerSeam hands over after
    each step (on_train_loss): read, one sync, only for a line.
    """

    INTERVAL_SECONDS = 30.0

    def __init__(self, facts: Facts, follow_logs: bool = False) -> None:
        self.facts = facts
        self.follow_logs = follow_logs
        self.clock: Callable[[], float] = time.monotonic
        self.active = False  # rank 0 without a bar, once training began
        self.pending = False  # a line is due, written where Trainer hands over its loss
        self.begin = self.last = (0, 0.0)  # (step, time): this attempt's start, the last line
        self.first: tuple[int, float] | None = None  # the end of this attempt's first step
        self.logged_step = 0  # Trainer's last training log (its loss accumulator restarts there)

    def on_train_loss(self, args: TrainingArguments, state: TrainerState, tr_loss: Any) -> None:
        """Trainer's sum of the losses since its last log, not yet reset, handed over after each optimizer step
        (after on_step_end) by trainer_seam.TrainerSeam: the due line is written here, with its mean per step."""
        if not self.pending:
            return
        self.pending, steps = False, state.global_step - self.logged_step
        loss = tr_loss.item() / steps if steps > 0 and hasattr(tr_loss, "item") else None
        self._write(args, state, _logged_loss(state.log_history) if loss is None else loss)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.active = False
        if not state.is_world_process_zero or state.global_step >= state.max_steps > 0:
            return  # nothing left to train: NoStepPastTheEnd says so
        for line in summary_lines(args, state, self.facts):
            logger.info(line)
        self.active = bool(args.disable_tqdm)
        if self.active and not self.follow_logs:
            logger.info("progress: a line every %g s and at least 1%% of the steps apart", self.INTERVAL_SECONDS)
        self.begin = self.last = (state.global_step, self.clock())
        self.first, self.logged_step, self.pending = None, state.global_step, False

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self.active:
            return
        step, now = state.global_step, self.clock()
        if self.first is None:
            self.first = (step, now)
        if not self.follow_logs and progress_due(
            step - self.last[0], now - self.last[1], state.max_steps, self.INTERVAL_SECONDS
        ):
            self.last = (step, now)
            self.pending = True  # written when Trainer hands over its loss (on_train_loss)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        logs = kwargs.get("logs") or {}
        if not self.active or "loss" not in logs:
            return
        self.logged_step = state.global_step
        if self.follow_logs:
            self._write(args, state, logs["loss"])

    def _write(self, args: TrainingArguments, state: TrainerState, loss: float | None) -> None:
        step, now = state.global_step, self.clock()
        if self.first is not None and step > self.first[0]:  # the pace after the first step (warm-up left out)
            pace = (now - self.first[1]) / (step - self.first[0])
        else:
            pace = (now - self.begin[1]) / (step - self.begin[0]) if step > self.begin[0] else None
        batch = global_batch(args, state)
        logger.info(progress_line(step, state.max_steps, state.epoch, loss, pace, batch, now - self.begin[1]))


def _logged_loss(history: list[dict[str, Any]]) -> float | None:
    """The training loss Trainer logged last."""
    return next((entry["loss"] for entry in reversed(history) if "loss" in entry), None)


class QuietBar(ProgressCallback):
    """Trainer's bar on a terminal, without the log dicts it prints (the metric lines show each value once). Log
    lines go through tqdm.write while it shows; before metric lines it is cleared, and the next step redraws it."""

    stack: ExitStack | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        super().on_train_begin(args, state, control, **kwargs)
        consoles = [h for h in logging.root.handlers if getattr(h, "stream", None) in (sys.stdout, sys.stderr)]
        if state.is_world_process_zero and consoles:  # (tqdm would add a console handler where there is none)
            self.stack = ExitStack()
            self.stack.enter_context(logging_redirect_tqdm())

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.training_bar is not None:
            self.training_bar.clear()

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.stack is not None:
            self.stack.close()
            self.stack = None
        super().on_train_end(args, state, control, **kwargs)


def callbacks(args: TrainingArguments, facts: Facts, explicit: Iterable[str]) -> list[TrainerCallback]:
    """The callbacks to register before MetricLines: Progress, and the quiet bar where Trainer would draw its own.
    `explicit`: the hyperparameters the user set (logging_steps there: Trainer's logs set the cadence)."""
    import transformers.trainer

    bar = not args.disable_tqdm and transformers.trainer.DEFAULT_PROGRESS_CALLBACK is ProgressCallback
    follow = bool({"logging_steps", "logging_strategy"} & set(explicit)) and args.logging_strategy != "no"
    return [Progress(facts, follow_logs=follow), *([QuietBar()] if bar else [])]


def attach(trainer: Any) -> None:
    """After Trainer is built: its own bar gives way to the quiet one (Progress reads the loss through the seam)."""
    registered = trainer.callback_handler.callbacks
    if any(isinstance(cb, QuietBar) for cb in registered):
        for cb in [cb for cb in registered if type(cb) is ProgressCallback]:
            trainer.remove_callback(cb)  # this instance, not the class: QuietBar is one too
