"""Trainer callbacks: metric lines on rank 0; checkpoints marked complete, without secrets, rotated safely."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from sm_train import checkpoint
from sm_train.metrics import metric_lines


class MetricLines(TrainerCallback):
    """Print every logged metric (training steps, evaluations, final results) as `[metric] name = value` lines.

    One write per log event: the PyTorch toolkit re-chunks the script's output and splits a line written in
    several writes (sagemaker-contract 0.11).
    """

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


class CheckpointKeeper(TrainerCallback):
    """After Trainer wrote a checkpoint: take secrets out of it, mark it complete, then rotate.

    Trainer pickles its arguments (hub_token included) into training_args.bin, which SageMaker uploads to S3; it
    never reads that file back when resuming. Rotation happens here, after the mark, instead of inside Trainer
    (before the mark), so a crash can never leave no complete checkpoint behind.
    """

    SECRET_FIELDS = ("hub_token", "push_to_hub_token")

    def __init__(self, keep: int | None) -> None:
        self.keep = keep

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if not args.should_save:
            return
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        secrets = [name for name in self.SECRET_FIELDS if getattr(args, name, None)]
        if secrets and (path / "training_args.bin").is_file():
            redacted = copy.copy(args)
            for name in secrets:
                setattr(redacted, name, None)
            torch.save(redacted, path / "training_args.bin")
        if path.is_dir():
            checkpoint.write_manifest(path)
            checkpoint.rotate(Path(args.output_dir), self.keep, state.best_model_checkpoint)
