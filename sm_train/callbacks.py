"""Trainer callbacks: metric lines on rank 0; checkpoints marked complete, without secrets, rotated safely."""

from __future__ import annotations

import copy
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from sm_train import checkpoint, collective
from sm_train.metrics import metric_lines
from sm_train.sharded import is_adapted

logger = logging.getLogger(__name__)


class MetricLines(TrainerCallback):
    """Print every logged metric (training steps, evaluations, final results) as `[metric] name = value` lines.

    One write per log event: the PyTorch toolkit re-chunks the script's output and splits a line written in
    several writes (sagemaker-contract 0.11).
    """

    started = False  # whether this attempt's first training step was logged

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        text = metric_lines(logs)
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.started:  # every later step: one attribute read (no per-step host work)
            return
        self.started = True
        if state.is_world_process_zero:
            logger.info("first training step of this attempt done (global step %d)", state.global_step)


class CheckpointKeeper(TrainerCallback):
    """After Trainer wrote a checkpoint: take secrets out of it, mark it complete, then rotate.

    Trainer pickles its arguments (hub_token included) into training_args.bin, which SageMaker uploads to S3; it
    never reads that file back when resuming. Rotation happens here, after the mark, instead of inside Trainer
    (before the mark), so a crash can never leave no complete checkpoint behind.
    """

    SECRET_FIELDS = ("hub_token", "push_to_hub_token")

    def __init__(self, keep: int | None, run: dict[str, Any] | None = None) -> None:
        self.keep = keep
        self.run = run  # trajectory.identity, recorded in each checkpoint's manifest

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any = None, **kwargs: Any
    ) -> None:
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        collective.wait_for_all()  # every process has written its part (its random states) before the mark
        if args.should_save and path.is_dir():
            if args.process_index != 0 and model is not None:
                _write_missing_weights(args, model, path)
            secrets = [name for name in self.SECRET_FIELDS if getattr(args, name, None)]
            if secrets and (path / "training_args.bin").is_file():
                redacted = copy.copy(args)
                for name in secrets:
                    setattr(redacted, name, None)
                torch.save(redacted, path / "training_args.bin")
            checkpoint.write_manifest(path, world_size=args.world_size, run=self.run)
        collective.wait_for_all()  # marked on every host before any host deletes an older checkpoint
        if args.should_save:
            checkpoint.rotate(Path(args.output_dir), self.keep, state.best_model_checkpoint)


def _write_missing_weights(args: TrainingArguments, model: Any, path: Path) -> None:
    """Another host's copy of a checkpoint (save_on_each_node): transformers 5 writes model weights on global rank 0
    only, so they are written here. Not for sharded models (FSDP, DeepSpeed), whose copy then stays incomplete. A
    LoRA model's are its adapter and head, as Trainer writes them (peft's save_pretrained)."""
    if any((path / name).is_file() for name in checkpoint.WEIGHTS) or args.fsdp or args.deepspeed:
        return
    if is_adapted(model):
        model.save_pretrained(str(path))
        return
    from safetensors.torch import save_model

    save_model(model, str(path / "model.safetensors"), metadata={"format": "pt"})
    model.config.to_json_file(str(path / "config.json"))


class TrainingDone(Exception):
    """The checkpoint resumed from is the run's last step: there is nothing left to train."""


class NoStepPastTheEnd(TrainerCallback):
    """A restart from the final checkpoint (killed during the final evaluation or save) would otherwise train one
    step more: Trainer runs a step before it checks max_steps. Raised after Trainer loaded the checkpoint's weights
    and state, before any step."""

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step >= state.max_steps > 0:
            raise TrainingDone


class SaveOrStop(TrainerCallback):
    """Checkpoints Trainer's schedule does not make, decided at the end of a step:

    - every `save_every_minutes` of wall-clock time, so a spot interruption loses at most that much work even with
      long steps or tiny epochs;
    - on SIGTERM (StopTrainingJob, MaxRuntime, spot) or SIGINT (`signalled`, called by the handler signals.py
      installs): save, then stop training. A signal after the last step lets the final evaluation and save finish.
      Either must end within `grace` seconds, or signals.py ends the process anyway.

    All processes take both decisions together (a signal or a clock can reach them a step apart; a process saving
    or stopping alone would hang the next collective operation). Agreeing costs a collective and a device sync,
    which small fast steps feel (a host-bound step loses to any per-step sync), so a distributed job agrees at
    check steps only: about every CHECK_SECONDS of training, at most MAX_CHECK_STEPS steps apart. The interval is
    computed from the slowest process's seconds per step, which the check itself agrees on, so every process
    computes the same next check step (a clock read by each process alone would not be). A signal is acted on at
    the next check step: about a second later, far within the grace. One process decides at every step, without
    any collective, tensor or sync: a flag read and, with save_every_minutes, a clock read.
    """

    CHECK_SECONDS = 1.0  # wall time between two agreements of a distributed job
    MAX_CHECK_STEPS = 100  # fast steps that slow down later still see a signal within a hundred steps

    def __init__(self, grace: float, save_every_minutes: float | None = None) -> None:
        self.grace = grace  # seconds a signalled process has to save and stop (signals.py exits it after)
        self.clock: Callable[[], float] = time.monotonic
        self.step = 0  # the last step that ended
        self.seconds = save_every_minutes * 60 if save_every_minutes else None
        self.last_save = 0.0  # when this process last saved (or training began)
        self.received: int | None = None  # the signal this process received
        self.stopped_at: int | None = None  # the step training stopped at because some process received one
        self.distributed: bool | None = None  # known once training begins (the process group exists by then)
        self.next_check = 0  # distributed: the step at which the processes next agree
        self.checked_step, self.checked_at = 0, 0.0  # the last agreement (or the start of training)

    def signalled(self, signum: int) -> bool:
        """A stop signal reached this process (signals.save_or_stop_process_on_signal's handler): save and stop at
        the end of this step, or at the next check step of a distributed job. False for a repeated one."""
        if self.received is not None:
            return False
        self.received = signum
        logger.warning(
            "%s received: stopping within %.0f s, with a checkpoint at the end of %s",
            signal.Signals(signum).name,
            self.grace,
            "the step where all processes agree (about a second)" if self.distributed else "this training step",
        )
        return True

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._begin(state.global_step)

    def _begin(self, step: int) -> None:
        self.distributed = collective.distributed()
        self.next_check = step + 1  # the first step, whose pace then sets the interval
        self.checked_step, self.checked_at = step, self.clock()
        self.last_save = self.checked_at  # save_every_minutes counts training time, not loading

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        step = self.step = state.global_step
        if self.distributed is None:  # called without on_train_begin
            self._begin(step - 1)
        if not self.distributed:
            stop = self.received is not None
            due = self.seconds is not None and self.clock() - self.last_save >= self.seconds
        elif step < self.next_check:
            return
        else:
            now = self.clock()
            due = self.seconds is not None and now - self.last_save >= self.seconds
            pace = (now - self.checked_at) / max(step - self.checked_step, 1)
            agreed = collective.largest([float(self.received is not None), float(due), pace], args.device)
            stop, due, pace = bool(agreed[0]), bool(agreed[1]), agreed[2]
            interval = self.MAX_CHECK_STEPS if pace <= 0 else round(self.CHECK_SECONDS / pace)
            self.next_check = step + min(max(interval, 1), self.MAX_CHECK_STEPS)
            self.checked_step, self.checked_at = step, now
        if stop:
            self.stopped_at = step
            control.should_training_stop = True
        if stop or due:
            control.should_save = True

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.last_save = self.clock()
