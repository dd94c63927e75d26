"""The code that drives transformers' Trainer: build it (callbacks, samplers), train (resuming, stopping on a
signal, not past the end) and find the last evaluation. runner.py decides what to run; this module runs it."""

from __future__ import annotations

import copy
import inspect
import json
import logging
import signal
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from torch.utils.data import SequentialSampler
from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, default_data_collator
from transformers.trainer_pt_utils import LengthGroupedSampler

from sm_train import outputs, progress
from sm_train.callbacks import CheckpointKeeper, MetricLines, NoStepPastTheEnd, SaveOrStop, TrainingDone
from sm_train.checkpoint import STATE_FILE, manifest
from sm_train.config import Config
from sm_train.env import SageMakerEnv
from sm_train.errors import Interrupted, PushFailed
from sm_train.reasons import failure_reason
from sm_train.tasks import Task
from sm_train.tasks.base import token_lengths

logger = logging.getLogger(__name__)


def build_trainer(
    cfg: Config, env: SageMakerEnv, task: Task, model: Any, tokenizer: Any, datasets: dict[str, Any], run: Any
) -> Trainer:
    # sm_train rotates checkpoints itself, after marking the newest complete (callbacks.CheckpointKeeper): Trainer
    # gets its own copy of the arguments with its rotation off, and the job's configuration stays as resolved.
    trainer_args = copy.copy(cfg.training_args)
    trainer_args.save_total_limit = None
    collator = task.collator(model)
    _fix_loss_scaling(model, datasets.get("train") or datasets["eval"], collator, trainer_args)
    facts = progress.Facts(
        {split: len(features) for split, features in datasets.items()},
        len(env.hosts) or 1,
        cfg.training_args.save_total_limit,
        cfg.job.save_every_minutes,
    )
    trainer = task.trainer_class(
        model=model,
        args=trainer_args,
        train_dataset=datasets.get("train"),
        eval_dataset=datasets.get("eval"),
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=task.compute_metrics,
        preprocess_logits_for_metrics=task.preprocess_logits,
        callbacks=[
            *progress.callbacks(trainer_args, facts, cfg.explicit),  # the bar, if any, is cleared before metric lines
            MetricLines(),
            CheckpointKeeper(cfg.training_args.save_total_limit, run),
            NoStepPastTheEnd(),
            SaveOrStop(
                cfg.job.sigterm_grace_seconds,
                cfg.job.save_every_minutes,
                lambda reason: outputs.write_failure(env.output_dir, reason),
            ),
        ],
    )
    if cfg.job.early_stopping_patience:
        trainer.add_callback(EarlyStoppingCallback(cfg.job.early_stopping_patience, cfg.job.early_stopping_threshold))
    # Our metric lines replace Trainer's printed dicts (transformers 5 renders them as quoted strings); on a
    # terminal its bar stays, without the dicts.
    trainer.remove_callback(PrinterCallback)
    progress.attach(trainer)
    _samplers(trainer)
    return trainer


def _fix_loss_scaling(model: Any, features: Dataset, collator: Any, args: Any) -> None:
    """Trainer multiplies the loss by the number of processes and skips the division by gradient_accumulation_steps
    for a model whose forward takes **kwargs, expecting it to divide a summed loss by num_items_in_batch. Models
    that return a plain mean and ignore that count (BERT's classification heads in transformers 5) then train
    with N times the gradients and report N times the loss. Two forwards on one row tell which kind this is (one
    row needs no padding, so a task without a collator of its own is served by default_data_collator)."""
    if args.world_size == 1 and args.gradient_accumulation_steps == 1:
        return  # both factors are 1
    forward = inspect.signature(model.forward).parameters
    takes_count = "num_items_in_batch" in forward or any(p.kind == p.VAR_KEYWORD for p in forward.values())
    if not takes_count or getattr(model, "accepts_loss_kwargs", True) is False:
        return
    named = {name for name, p in forward.items() if p.kind != p.VAR_KEYWORD}
    batch = (collator or default_data_collator)([{k: v for k, v in features[0].items() if k in named}])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mean = model(**batch).loss
            counted = model(**batch, num_items_in_batch=torch.tensor(10**6)).loss
    finally:
        model.train(was_training)
    if torch.allclose(mean, counted):
        model.accepts_loss_kwargs = False
        logger.info("the model's loss is a per-batch mean: Trainer's scaling by num_items_in_batch turned off")


def save_model(trainer: Trainer, directory: Path) -> None:
    """The deployable model, one copy: SageMaker merges every host's model dir into one model.tar.gz. Every rank
    calls it: Trainer gates the writes and gathers sharded weights."""
    args = trainer.args  # the Trainer's own copy (build_trainer)
    each_node, args.save_on_each_node = args.save_on_each_node, False
    try:
        if _sharded_fsdp(trainer):
            _save_gathered(trainer, directory)
        else:
            trainer.save_model(str(directory), _internal_call=True)  # no push to the Hub here: push_model does
    finally:
        args.save_on_each_node = each_node


def push_model(trainer: Trainer, model_dir: Path) -> None:
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


def _sharded_fsdp(trainer: Trainer) -> bool:
    fsdp = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    return fsdp is not None and "SHARDED" in str(fsdp.state_dict_type)


def _save_gathered(trainer: Trainer, directory: Path) -> None:
    """FSDP with sharded state dicts (fsdp_config state_dict_type): Trainer.save_model writes no weights then. The
    whole model is gathered into the first process's memory (every process takes part) and saved as save_model
    saves a full one."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(trainer.model_wrapped, options=options)
    if trainer.args.should_save:
        trainer._save(str(directory), state_dict=state)


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Trainer's length-grouped sampler draws from the global random state, which a resumed attempt restores only
    after the epoch's batches were drawn: a restart mid-epoch then trains on other batches than the run it
    continues. Here each epoch's draw depends on (seed, epoch) alone; accelerate passes the epoch on (set_epoch)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


def _samplers(trainer: Trainer) -> None:
    """Fixes to Trainer's length grouping (transformers 4.x and 5 alike):

    - training batches are drawn per (seed, epoch), so a resumed attempt trains on exactly the same batches;
    - the lengths come from Arrow (Trainer measures the rows one by one: 17 s for 500,000 rows);
    - Trainer groups *evaluation* batches too, and never puts the predictions back in order: QA answers and summaries
      would land on other rows. Evaluation reads the dataset in order instead, which _preprocess sorted by length.
    """
    args, original = trainer.args, trainer._get_train_sampler
    grouped = getattr(args, "train_sampling_strategy", None) == "group_by_length" or getattr(
        args, "group_by_length", False
    )
    seed = args.data_seed if args.data_seed is not None else args.seed

    def train_sampler(dataset: Any = None) -> Any:
        dataset = trainer.train_dataset if dataset is None else dataset
        if not grouped or not isinstance(dataset, Dataset) or "input_ids" not in dataset.column_names:
            return original(dataset)
        lengths = token_lengths(dataset).tolist()
        return EpochSeededLengthGroupedSampler(args.train_batch_size * args.gradient_accumulation_steps, lengths, seed)

    trainer._get_train_sampler = train_sampler
    trainer._get_eval_sampler = lambda dataset: SequentialSampler(dataset) if args.world_size <= 1 else None


def final_evaluation(trainer: Trainer) -> dict[str, Any] | None:
    """The evaluation Trainer already ran at the last step (eval_strategy=epoch does), to avoid running it twice.

    Not reused with load_best_model_at_end: the final model is then the best one, not the last one evaluated.
    """
    if trainer.args.load_best_model_at_end:
        return None
    evaluations = [entry for entry in trainer.state.log_history if "eval_runtime" in entry]
    if not evaluations or evaluations[-1].get("step") != trainer.state.global_step:
        return None
    return {k: v for k, v in evaluations[-1].items() if k.startswith("eval_") or k == "epoch"}


def _explain_resume(trainer: Trainer, path: Path) -> None:
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


def train(trainer: Trainer, resume: str | None, stopper: SaveOrStop) -> dict[str, Any]:
    """trainer.train's metrics; raises Interrupted when a signal stopped it before its last step (after saving)."""
    if resume:
        _explain_resume(trainer, Path(resume))
    try:
        metrics = trainer.train(resume_from_checkpoint=resume).metrics
    except TrainingDone:
        state = trainer.state
        logger.info("%s is the last step (%d): no step left to train", resume, state.max_steps)
        if trainer.args.load_best_model_at_end and state.best_model_checkpoint:
            trainer._load_best_model()  # as Trainer ends a run; pylint: disable=protected-access
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
