"""The only code that touches Trainer: build it, resume, train, evaluate, save the deployable model."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
from pathlib import Path
from typing import Any

from torch.utils.data import SequentialSampler
from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, set_seed

from sm_train import __version__, cache, claim, collective, data, device, outputs, trajectory
from sm_train.callbacks import (
    CheckpointKeeper,
    MetricLines,
    NoStepPastTheEnd,
    SaveOrStop,
    TrainingDone,
)
from sm_train.checkpoint import STATE_FILE, complete_checkpoints, load_problem, manifest, resolve_resume
from sm_train.config import Config
from sm_train.env import SageMakerEnv
from sm_train.errors import ConfigError, DataError, Interrupted, interrupt_on_signal
from sm_train.models import check_model_path, load, load_tokenizer
from sm_train.tasks import Task
from sm_train.tasks.base import length_order

logger = logging.getLogger(__name__)


def _splits(cfg: Config, env: SageMakerEnv) -> Any:
    """The raw splits to use: training and evaluation both happen when their data exists, unless set false."""
    args, explicit = cfg.training_args, cfg.explicit
    do_train = args.do_train or "do_train" not in explicit
    do_eval = args.do_eval or "do_eval" not in explicit
    raw = data.load_raw(cfg.job, env)
    if do_train and "train" not in raw:
        raise DataError(data.missing_train_message(env))
    if "do_eval" in explicit and args.do_eval and "eval" not in raw:
        raise DataError(
            "do_eval=true but there is no evaluation data: add a 'validation' or 'test' channel, or set "
            "validation_file."
        )
    for split, wanted in (("train", do_train), ("eval", do_eval)):
        if not wanted and split in raw:
            del raw[split]
    if "train" in raw and "eval" not in raw and args.eval_strategy != "no":
        patience = cfg.job.early_stopping_patience
        setting = f"early_stopping_patience={patience}" if patience else f"eval_strategy={args.eval_strategy.value}"
        raise DataError(
            f"{setting} needs evaluation data: add a 'validation' or 'test' channel, or set validation_file."
        )
    if not raw:
        raise ConfigError("do_train=false and no evaluation: the job has nothing to do.")
    return raw


def build_trainer(
    cfg: Config, env: SageMakerEnv, task: Task, model: Any, tokenizer: Any, datasets: dict[str, Any], run: Any
) -> Trainer:
    # sm_train rotates checkpoints itself, after marking the newest complete (callbacks.CheckpointKeeper).
    keep, cfg.training_args.save_total_limit = cfg.training_args.save_total_limit, None
    trainer = task.trainer_class(
        model=model,
        args=cfg.training_args,
        train_dataset=datasets.get("train"),
        eval_dataset=datasets.get("eval"),
        processing_class=tokenizer,
        data_collator=task.collator(tokenizer, model),
        compute_metrics=task.compute_metrics,
        preprocess_logits_for_metrics=task.preprocess_logits,
        callbacks=[
            MetricLines(),
            CheckpointKeeper(keep, run),
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
    # Our metric lines replace Trainer's printed dicts, which transformers 5 renders as quoted strings.
    trainer.remove_callback(PrinterCallback)
    # Trainer (4.x and 5) also groups *evaluation* batches by length when training batches are, and never puts the
    # predictions back in order: QA answers and summaries would land on other rows. Evaluation reads the dataset in
    # order instead, which _preprocess sorted by length.
    trainer._get_eval_sampler = lambda dataset: SequentialSampler(dataset) if trainer.args.world_size <= 1 else None
    return trainer


def _final_evaluation(trainer: Trainer) -> dict[str, Any] | None:
    """The evaluation Trainer already ran at the last step (eval_strategy=epoch does), to avoid running it twice.

    Not reused with load_best_model_at_end: the final model is then the best one, not the last one evaluated.
    """
    if trainer.args.load_best_model_at_end:
        return None
    evaluations = [entry for entry in trainer.state.log_history if "eval_runtime" in entry]
    if not evaluations or evaluations[-1].get("step") != trainer.state.global_step:
        return None
    return {k: v for k, v in evaluations[-1].items() if k.startswith("eval_") or k == "epoch"}


def _saves_checkpoints(cfg: Config) -> bool:
    return cfg.training_args.save_strategy != "no" or bool(cfg.job.save_every_minutes)


def _preprocess(
    cfg: Config, env: SageMakerEnv, task: Task, raw: Any, tokenizer: Any, model: Any, fingerprints: dict[str, str]
) -> dict[str, Any]:
    """Model inputs per split, from the checkpoint dir's cache when a previous attempt already made them."""
    args = cfg.training_args
    root = Path(args.output_dir)
    key = None
    if "train" in raw and _saves_checkpoints(cfg):
        settings = {
            "task": cfg.task_cls.name,
            "task_args": dataclasses.asdict(cfg.task_args),
            "model_type": model.config.model_type,
            "sm_train": __version__,
        }
        key = cache.cache_key(fingerprints, cache.tokenizer_fingerprint(tokenizer), settings)
    cached = cache.load(root, key) if key else None
    if cached is not None and set(cached) == set(raw):
        datasets = dict(cached)
    else:
        datasets = {
            split: task.preprocess(raw[split], tokenizer, training=split == "train", num_proc=cfg.job.num_proc)
            for split in raw
        }
        if key and env.local_rank == 0:
            cache.save(root, key, datasets)
    if "eval" in raw:
        # Longest first: batches of similar lengths pad little, and memory runs out (if it does) at once.
        task.eval_order = length_order(datasets["eval"])
        datasets["eval"] = datasets["eval"].select(task.eval_order)
        task.set_eval(raw["eval"], datasets["eval"])
    return datasets


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


def _train(trainer: Trainer, resume: str | None, stopper: SaveOrStop) -> dict[str, Any]:
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


def _claim(cfg: Config, env: SageMakerEnv, directory: Path) -> None:
    """A training job's checkpoint dir is held by this job alone."""
    if env.local_rank == 0:
        claim.claim(directory, env)
    if env.in_sagemaker and not env.checkpoints_synced and _saves_checkpoints(cfg):
        logger.warning(
            "checkpoints go to %s but SageMaker is not syncing them (no checkpoint_s3_uri on the estimator): "
            "an interrupted job cannot resume from them",
            directory,
        )


def _nothing_trained(directory: Path) -> str:
    """The failure reason of a signal before training: what the checkpoint dir holds for the restart."""
    found = complete_checkpoints(directory)
    kept = (
        f"{found[-1][1].name} from an earlier attempt is kept in {directory} and a restarted job resumes from it"
        if found
        else "no checkpoint exists yet, so a restarted job starts from the beginning"
    )
    return f"before training started (while loading or preprocessing): this attempt trained and saved nothing; {kept}."


def _run_identity(cfg: Config, task: Task, model_name: str, tokenizer: Any, fingerprints: dict[str, str]) -> Any:
    """What a checkpoint records of this run, and a resumed one must match (trajectory.py). The evaluation data
    counts when evaluations pick the final model."""
    picks = cfg.training_args.load_best_model_at_end
    data = {split: fingerprint for split, fingerprint in fingerprints.items() if split == "train" or picks}
    tokens = cache.tokenizer_fingerprint(tokenizer)
    return trajectory.identity(cfg, trajectory.model_fingerprint(model_name), tokens, data, task.card())


def _resume_point(cfg: Config, env: SageMakerEnv, directory: Path, run: Any, model: Any) -> str | None:
    """The checkpoint to resume from: complete, loadable into this model, and made by this same run."""
    resume = resolve_resume(
        cfg.job.resume,
        directory,
        main_process=env.local_rank == 0,
        everywhere=collective.common_steps,
        usable=lambda path: load_problem(path, model),
    )
    if resume:
        trajectory.check_same_run(Path(resume), manifest(Path(resume)).get("run"), run)
    return resume


def _fit_device(cfg: Config, task: Task, tokenizer: Any) -> None:
    """Padding multiple and attention backend for the device training runs on (device.py), before any forward."""
    on_gpu = cfg.training_args.device.type == "cuda"
    hardware = device.describe() if on_gpu else device.DeviceInfo()
    task.pad_multiple = device.pad_multiple(hardware, cfg.job.pad_to_multiple_of, tokenizer.model_max_length)
    logger.info(
        "batches padded to %s",
        f"a multiple of {task.pad_multiple} tokens" if task.pad_multiple else "their longest row (no multiple)",
    )
    said = device.attention_backends(hardware, cfg.job.cudnn_attention)
    if said:
        logger.info(said)


def run(cfg: Config, env: SageMakerEnv) -> dict[str, Any]:
    """Train and/or evaluate, then save the model dir. Returns all results."""
    args = cfg.training_args
    model_name = check_model_path(cfg.job.model_name_or_path)
    directory = Path(args.output_dir)
    claim.check_placement(directory, env)
    with interrupt_on_signal(lambda: _nothing_trained(directory)):
        raw = _splits(cfg, env)
        training = "train" in raw
        if training:
            _claim(cfg, env, directory)
        tokenizer = load_tokenizer(model_name, cfg.job.trust_remote_code)
        task = cfg.task_cls(cfg.task_args)
        task.prepare(raw, tokenizer)  # columns, labels and windows are checked before the model is loaded
        fingerprints = cache.data_fingerprints(raw) if training else {}
        run_id = _run_identity(cfg, task, model_name, tokenizer, fingerprints) if training else None

        set_seed(args.seed)
        model = load(
            task.model_class, model_name, "model", trust_remote_code=cfg.job.trust_remote_code, **task.model_kwargs()
        )
        task.configure(model, tokenizer, args)
        resume = _resume_point(cfg, env, directory, run_id, model) if training else None
        with args.main_process_first(desc="preprocessing"):
            datasets = _preprocess(cfg, env, task, raw, tokenizer, model, fingerprints)
        _fit_device(cfg, task, tokenizer)
        trainer = build_trainer(cfg, env, task, model, tokenizer, datasets, run_id)

    stopper = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SaveOrStop))
    with stopper:  # through the final evaluation and save, which a signal after the last step lets finish
        train_results: dict[str, Any] = {}
        eval_results: dict[str, Any] = {}
        if "train" in raw:
            train_results = {**_train(trainer, resume, stopper), "train_samples": len(raw["train"])}
        if "eval" in raw:
            eval_results = {**(_final_evaluation(trainer) or trainer.evaluate()), "eval_samples": len(raw["eval"])}

        # One copy of the model: SageMaker merges every host's model dir into one model.tar.gz.
        each_node, args.save_on_each_node = args.save_on_each_node, False
        trainer.save_model(str(env.model_dir))  # every rank: Trainer gates the writes and gathers sharded weights
        args.save_on_each_node = each_node
        if trainer.is_world_process_zero():
            outputs.make_deployable(env.model_dir, tokenizer.model_input_names)
            task.write_predictions(env.output_data_dir)
            sizes = {split: len(raw[split]) for split in raw}
            outputs.write_all(cfg, env, task.card(), model_name, sizes, train_results, eval_results, resume)
    return {**train_results, **eval_results}
