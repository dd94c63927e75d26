"""The only code that touches Trainer: build it, resume, train, evaluate, save the deployable model."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoTokenizer, EarlyStoppingCallback, PrinterCallback, Trainer, set_seed

from sm_train import __version__, cache, collective, data, outputs
from sm_train.callbacks import CheckpointKeeper, MetricLines, SaveOrStop
from sm_train.checkpoint import STATE_FILE, resolve_resume, saved_world_size
from sm_train.config import Config
from sm_train.env import SageMakerEnv
from sm_train.errors import ConfigError, DataError, Interrupted
from sm_train.tasks import Task

logger = logging.getLogger(__name__)


def check_model_path(name: str | None) -> str:
    """A local model path must be a saved model dir; anything else is taken as a Hub id."""
    if not name:
        raise ConfigError(
            "model_name_or_path is required: pass a Hub model id or a local path, or give the job a 'model' channel."
        )
    path = Path(name).expanduser()
    looks_local = path.is_absolute() or name.startswith((".", "~")) or path.exists()
    if looks_local:
        if not path.is_dir():
            raise ConfigError(f"model_name_or_path={name!r} does not exist; pass a saved model directory or a Hub id.")
        if not (path / "config.json").is_file():
            found = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
            raise ConfigError(
                f"model_name_or_path={name!r} has no config.json (found: {found}); "
                "point it at a directory written by save_pretrained."
            )
    return name


def _load(loader: Any, name: str, what: str, **kwargs: Any) -> Any:
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as e:
        raise ConfigError(
            f"Could not load the {what} from model_name_or_path={name!r}: {e}. Use a local path, a 'model' channel, "
            "or a Hub id the job can reach."
        ) from e


def _load_tokenizer(model_name: str) -> Any:
    """The tokenizer, with its length limit made real: many checkpoints leave model_max_length unset (1e30), and
    windows longer than the model's position embeddings crash inside the model instead of being truncated."""
    tokenizer = _load(AutoTokenizer, model_name, "tokenizer")
    config = _load(AutoConfig, model_name, "config")
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and tokenizer.model_max_length > positions:
        # RoBERTa-style position ids start after the padding index: two fewer usable positions.
        usable = positions - 2 if "roberta" in (config.model_type or "") else positions
        logger.info(
            "tokenizer model_max_length %s set to the model's %d positions", tokenizer.model_max_length, usable
        )
        tokenizer.model_max_length = usable
    return tokenizer


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


def build_trainer(cfg: Config, task: Task, model: Any, tokenizer: Any, datasets: dict[str, Any]) -> Trainer:
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
            CheckpointKeeper(keep),
            SaveOrStop(cfg.job.sigterm_grace_seconds, cfg.job.save_every_minutes),
        ],
    )
    if cfg.job.early_stopping_patience:
        trainer.add_callback(EarlyStoppingCallback(cfg.job.early_stopping_patience, cfg.job.early_stopping_threshold))
    # Our metric lines replace Trainer's printed dicts, which transformers 5 renders as quoted strings.
    trainer.remove_callback(PrinterCallback)
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


def _preprocess(cfg: Config, env: SageMakerEnv, task: Task, raw: Any, tokenizer: Any, model: Any) -> dict[str, Any]:
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
        key = cache.cache_key(raw, tokenizer, settings)
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
    saved = saved_world_size(path)
    if saved is not None and saved != args.world_size:
        logger.warning(
            "the checkpoint was written by %d processes and this job runs %d: steps are recomputed, the data order "
            "and random states cannot match the original run exactly",
            saved,
            args.world_size,
        )


def _train(trainer: Trainer, resume: str | None, stopper: SaveOrStop) -> Any:
    """trainer.train; raises Interrupted when a signal stopped it before its last step (after saving)."""
    if resume:
        _explain_resume(trainer, Path(resume))
    output = trainer.train(resume_from_checkpoint=resume)
    step = trainer.state.global_step
    if stopper.stopped_at is not None and step < trainer.state.max_steps:
        signum = stopper.received or signal.SIGTERM  # or another process received it
        raise Interrupted(
            f"Stopped by {signal.Signals(signum).name} at step {step}: checkpoint-{step} is saved in "
            f"{trainer.args.output_dir}; a restarted job with the same checkpoint dir resumes from it.",
            signum,
        )
    return output


def run(cfg: Config, env: SageMakerEnv) -> dict[str, Any]:
    """Train and/or evaluate, then save the model dir. Returns all results."""
    args = cfg.training_args
    model_name = check_model_path(cfg.job.model_name_or_path)
    raw = _splits(cfg, env)
    resume = None
    if "train" in raw:
        resume = resolve_resume(
            cfg.job.resume, Path(args.output_dir), main_process=env.local_rank == 0, everywhere=collective.common_steps
        )
        if env.in_sagemaker and not env.checkpoints_synced and _saves_checkpoints(cfg):
            logger.warning(
                "checkpoints go to %s but SageMaker is not syncing them (no checkpoint_s3_uri on the estimator): "
                "an interrupted job cannot resume from them",
                args.output_dir,
            )
    tokenizer = _load_tokenizer(model_name)
    task = cfg.task_cls(cfg.task_args)
    task.prepare(raw, tokenizer)  # columns, labels and windows are checked before the model is loaded

    set_seed(args.seed)
    model = _load(task.model_class, model_name, "model", **task.model_kwargs())
    task.configure(model, tokenizer, args)
    with args.main_process_first(desc="preprocessing"):
        datasets = _preprocess(cfg, env, task, raw, tokenizer, model)
    trainer = build_trainer(cfg, task, model, tokenizer, datasets)

    stopper = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SaveOrStop))
    with stopper:  # through the final evaluation and save, which a signal after the last step lets finish
        train_results: dict[str, Any] = {}
        eval_results: dict[str, Any] = {}
        if "train" in raw:
            output = _train(trainer, resume, stopper)
            train_results = {**output.metrics, "train_samples": len(raw["train"])}
        if "eval" in raw:
            eval_results = {**(_final_evaluation(trainer) or trainer.evaluate()), "eval_samples": len(raw["eval"])}

        # One copy of the model: SageMaker merges every host's model dir into one model.tar.gz.
        each_node, args.save_on_each_node = args.save_on_each_node, False
        trainer.save_model(str(env.model_dir))  # every rank: Trainer gates the writes and gathers sharded weights
        args.save_on_each_node = each_node
        if trainer.is_world_process_zero():
            sizes = {split: len(raw[split]) for split in raw}
            outputs.make_deployable(env.model_dir, tokenizer.model_input_names)
            task.write_predictions(env.output_data_dir)
            _write_outputs(cfg, env, task, model_name, sizes, train_results, eval_results)
    return {**train_results, **eval_results}


def _write_outputs(
    cfg: Config,
    env: SageMakerEnv,
    task: Task,
    model_name: str,
    sizes: dict[str, int],
    train_results: dict[str, Any],
    eval_results: dict[str, Any],
) -> None:
    outputs.write_results((env.model_dir, env.output_data_dir), train_results, eval_results)
    outputs.write_json(env.output_data_dir / "sm_train_config.json", outputs.resolved_config(cfg, task.card(), env))
    card = outputs.model_card(
        task=cfg.task_cls.name,
        base_model=model_name,
        sizes=sizes,
        hyperparameters=cfg.hyperparameters,
        train=train_results,
        evaluation=eval_results,
        task_facts=task.card(),
    )
    (env.model_dir / "README.md").write_text(card, encoding="utf-8")
    logger.info("model saved to %s", env.model_dir)
