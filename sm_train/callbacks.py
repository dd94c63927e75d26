"""Trainer callbacks: metric lines on rank 0, and no secret in a checkpoint."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

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


class RedactCheckpointArgs(TrainerCallback):
    """Trainer pickles its arguments, hub_token included, into every checkpoint, which SageMaker uploads to S3.
    Rewrite that file without the token (Trainer never reads it back when resuming)."""

    SECRET_FIELDS = ("hub_token", "push_to_hub_token")

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        secrets = [name for name in self.SECRET_FIELDS if getattr(args, name, None)]
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / "training_args.bin"
        if not secrets or not state.is_world_process_zero or not path.is_file():
            return
        redacted = copy.copy(args)
        for name in secrets:
            setattr(redacted, name, None)
        torch.save(redacted, path)
