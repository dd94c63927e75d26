"""The code that drives transformers' Trainer: build it (the task's Trainer class through trainer_seam.py, with
sm_train's callbacks), train (resuming, stopping on a signal, not past the end), find the last evaluation, predict on
a test set, save and push the model. runner.py decides what to run; this module runs it."""

from __future__ import annotations

import copy
import json
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import EarlyStoppingCallback, EvalPrediction, PrinterCallback

from sm_train import progress, tracking
from sm_train.callbacks import CheckpointKeeper, MetricLines, NoStepPastTheEnd, SaveOrStop, TrainingDone
from sm_train.checkpoint import STATE_FILE, manifest
from sm_train.config import Config
from sm_train.env import SageMakerEnv
from sm_train.errors import Interrupted, PushFailed
from sm_train.reasons import failure_reason
from sm_train.tasks import Task
from sm_train.tasks.base import Evaluations
from sm_train.trainer_seam import TrainerSeam, seam_class

logger = logging.getLogger(__name__)


def build_trainer(
    cfg: Config,
    env: SageMakerEnv,
    task: Task,
    model: Any,
    tokenizer: Any,
    datasets: dict[str, Any],
    run: Any,
    stopper: SaveOrStop,
    *,
    pad_multiple: int | None,
    evaluations: Callable[[Any], dict[str, float]],
) -> TrainerSeam:
    """The task's Trainer through the seam (trainer_seam.py: samplers, loss scaling, the loss hand-over), with
    sm_train's callbacks. From the runner: `stopper`, the save-or-stop decisions its signal handlers feed
    (signals.py); `pad_multiple` for the task's collator; `evaluations`, Trainer's compute_metrics."""
    # sm_train rotates checkpoints itself, after marking the newest complete (callbacks.CheckpointKeeper): Trainer
    # gets its own copy of the arguments with its rotation off, and the job's configuration stays as resolved.
    trainer_args = copy.copy(cfg.training_args)
    trainer_args.save_total_limit = None
    facts = progress.Facts(
        {split: len(features) for split, features in datasets.items()},
        len(env.hosts) or 1,
        cfg.training_args.save_total_limit,
        cfg.job.save_every_minutes,
    )
    trainer = seam_class(task.trainer_class)(
        model=model,
        args=trainer_args,
        train_dataset=datasets.get("train"),
        eval_dataset=datasets.get("eval"),
        processing_class=tokenizer,
        data_collator=task.collator(model, pad_multiple),
        compute_metrics=evaluations,
        preprocess_logits_for_metrics=task.preprocess_logits,
        callbacks=[
            *progress.callbacks(trainer_args, facts, cfg.explicit),  # the bar, if any, is cleared before metric lines
            MetricLines(),
            CheckpointKeeper(cfg.training_args.save_total_limit, run),
            NoStepPastTheEnd(),
            stopper,
        ],
    )
    if cfg.job.early_stopping_patience:
        trainer.add_callback(EarlyStoppingCallback(cfg.job.early_stopping_patience, cfg.job.early_stopping_threshold))
    # Our metric lines replace Trainer's printed dicts (transformers 5 renders them as quoted strings); on a
    # terminal its bar stays, without the dicts.
    trainer.remove_callback(PrinterCallback)
    tracking.attach(trainer, cfg, env)  # report_to's TensorBoard and MLflow: the job's folder and run, rank 0 only
    progress.attach(trainer)
    return trainer


def save_model(trainer: TrainerSeam, directory: Path, merge_adapters: bool = True) -> None:
    """The deployable model, one copy (TrainerSeam.save_deployable); every rank calls it. A LoRA model is saved with
    its adapters merged in (merge_adapters), or as its adapter beside the task's config."""
    trainer.save_deployable(directory, merge_adapters)


def push_model(trainer: TrainerSeam, model_dir: Path) -> None:
    """The Hub copy (push_to_hub), once the model dir and the outputs are complete; every process calls it. A
    failure keeps them: the trained model still reaches S3 with the job."""
    if not trainer.args.push_to_hub:
        return
    try:
        trainer.push_to_hub(commit_message="Model save", revision=getattr(trainer.args, "hub_revision", None))
    except Exception as error:
        raise PushFailed(
            f"Training finished and the model is saved in {model_dir} (SageMaker uploads it with the job), but "
            f"pushing it to the Hub (hub_model_id={trainer.args.hub_model_id}) failed: {failure_reason(error)}"
        ) from error


def final_evaluation(trainer: TrainerSeam) -> dict[str, Any] | None:
    """The evaluation Trainer already ran at the last step (eval_strategy=epoch does), to avoid running it twice.

    Not reused with load_best_model_at_end: the final model is then the best one, not the last one evaluated.
    """
    if trainer.args.load_best_model_at_end:
        return None
    evaluations = [entry for entry in trainer.state.log_history if "eval_runtime" in entry]
    if not evaluations or evaluations[-1].get("step") != trainer.state.global_step:
        return None
    return {k: v for k, v in evaluations[-1].items() if k.startswith("eval_") or k == "epoch"}


def predict(trainer: TrainerSeam, features: Any, evaluations: Evaluations) -> tuple[dict[str, Any], Any]:
    """Trainer.predict on a test set's features (in the order set_eval was given): its test_* metrics, logged as
    metric lines, and the readable predictions. Trainer scores only data with labels: without them the task's
    score runs here on the predictions alone (label_ids None: no metrics)."""
    evaluations.last = None  # the final evaluation's predictions are not the test set's
    output = trainer.predict(features, metric_key_prefix="test")
    if output.label_ids is None and output.predictions is not None:  # (prediction_loss_only keeps none)
        evaluations(EvalPrediction(predictions=output.predictions, label_ids=None))
    metrics = dict(output.metrics)
    trainer.log(dict(metrics))  # Trainer.predict logs nothing: the metric lines come from this log event
    return metrics, evaluations.last


def _explain_resume(trainer: TrainerSeam, path: Path) -> None:
    """Say what resuming costs: batches skipped by index (accelerate's skip_first_batches, nothing re-read), and
    what a different number of processes changes."""
    args = trainer.args
    step = json.loads((path / STATE_FILE).read_text()).get("global_step", 0)
    batches = len(trainer.get_train_dataloader())
    steps_per_epoch = max(-(-batches // args.gradient_accumulation_steps), 1)  # rounded up, as Trainer does
    skipped = (step % steps_per_epoch) * args.gradient_accumulation_steps
    logger.info(
        "resuming at step %d (epoch %d): skipping the first %d batches of this epoch without reading them",
        step,
        step // steps_per_epoch,
        skipped,
    )
    saved = manifest(path).get("world_size")
    if saved is not None and saved != args.world_size:
        logger.warning(
            "the checkpoint was written by %d processes and this job runs %d: steps are recomputed, the data order "
            "and random states cannot match the original run exactly",
            saved,
            args.world_size,
        )


def train(trainer: TrainerSeam, resume: str | None, stopper: SaveOrStop) -> dict[str, Any]:
    """trainer.train's metrics; raises Interrupted when a signal stopped it before its last step (after saving)."""
    if resume:
        _explain_resume(trainer, Path(resume))
    try:
        metrics = trainer.train(resume_from_checkpoint=resume).metrics
    except TrainingDone:
        state = trainer.state
        logger.info("%s is the last step (%d): no step left to train", resume, state.max_steps)
        trainer.finish_at_the_last_step()  # the best model, as Trainer ends a run (load_best_model_at_end)
        return {"epoch": state.epoch, "total_flos": state.total_flos}
    step = trainer.state.global_step
    if stopper.stopped_at is not None and step < trainer.state.max_steps:
        signum = stopper.received or signal.SIGTERM  # or another process received it
        raise Interrupted(
            f"Stopped by {signal.Signals(signum).name} at step {step}: checkpoint-{step} is saved in "
            f"{trainer.args.output_dir}; a restarted job with the same checkpoint dir resumes from it.",
            signum,
        )
    return metrics
