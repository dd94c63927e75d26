"""Trainer callbacks: metric lines on rank 0."""

from __future__ import annotations

import sys
from typing import Any

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
