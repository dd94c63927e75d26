"""What a job does, in order: data, tokenizer, model, resume point, preprocessing; then training (training.py builds
and drives Trainer), the final evaluation, predictions on a test set and the deployable model."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from transformers import set_seed

from sm_train import (
    __version__,
    cache,
    claim,
    collective,
    data,
    deployable,
    device,
    dist,
    files,
    lora,
    outputs,
    signals,
    smdist,
    tracking,
    training,
    trajectory,
    uploads,
)
from sm_train.callbacks import SaveOrStop
from sm_train.checkpoint import complete_checkpoints, load_problem, manifest, resolve_resume
from sm_train.config import Config
from sm_train.env import SageMakerEnv
from sm_train.models import check_model_path, load, load_tokenizer
from sm_train.tasks import Task
from sm_train.tasks.base import Evaluations, length_order

logger = logging.getLogger(__name__)


def _preprocess(
    cfg: Config, env: SageMakerEnv, task: Task, raw: Any, tokenizer: Any, model: Any, fingerprints: dict[str, str]
) -> dict[str, Any]:
    """Model inputs per split, from the checkpoint dir's cache when a previous attempt already made them."""
    args = cfg.training_args
    root = Path(args.output_dir)
    key = None
    if "train" in raw and cfg.saves_checkpoints:
        settings = {
            "task": cfg.task_cls.name,
            "task_args": dataclasses.asdict(cfg.task_args),
            "task_facts": task.card(),  # what prepare read off the data: the labels, the problem type
            "model_type": model.config.model_type,
            "sm_train": __version__,
        }
        key = cache.cache_key(fingerprints, cache.tokenizer_fingerprint(tokenizer), settings)
    cached = cache.load(root, key) if key else None
    if cached is not None and set(cached) == set(raw):
        datasets = dict(cached)
    else:
        datasets = {
            split: task.preprocess(raw[split], training=split == "train", num_proc=cfg.job.num_proc) for split in raw
        }
        if key and env.local_rank == 0:
            cache.save(root, key, datasets)
    if "eval" in raw:
        datasets["eval"] = _evaluated(task, raw, datasets, "eval")
    return datasets


def _claim(cfg: Config, env: SageMakerEnv, directory: Path) -> None:
    """A training job's checkpoint dir is held by this job alone."""
    if env.local_rank == 0:
        claim.claim(directory, env)
    if env.in_sagemaker and not env.checkpoints_synced and cfg.saves_checkpoints:
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
    counts when evaluations pick the final model; a test set never changes it."""
    picks = cfg.training_args.load_best_model_at_end
    counted = {"train", "eval"} if picks else {"train"}
    kept = {split: fingerprint for split, fingerprint in fingerprints.items() if split in counted}
    tokens = cache.tokenizer_fingerprint(tokenizer)
    return trajectory.identity(cfg, trajectory.model_fingerprint(model_name), tokens, kept, task.card())


def _resume_point(cfg: Config, env: SageMakerEnv, directory: Path, run: Any, model: Any) -> str | None:
    """The checkpoint to resume from: complete, loadable into this model, and made by this same run. One of other
    LoRA settings cannot load, and is refused by the same-run rule rather than set aside as another model's."""

    def usable(path: Path) -> str | None:
        return None if lora.other_settings(manifest(path).get("run"), run) else load_problem(path, model)

    resume = resolve_resume(
        cfg.job.resume,
        directory,
        main_process=env.local_rank == 0,
        everywhere=collective.common_steps,
        usable=usable,
    )
    if resume:
        trajectory.check_same_run(Path(resume), manifest(Path(resume)).get("run"), run)
    return resume


def _fit_device(cfg: Config, tokenizer: Any, hardware: device.DeviceInfo) -> int | None:
    """Padding multiple and attention backend for the device training runs on (device.py), before any forward.
    `hardware`: the machine as the entry point described it once; a job on the CPU (use_cpu) pads as a CPU does.
    Returns the padding multiple, for the task's collator (None: each batch to its longest row)."""
    if cfg.training_args.device.type != "cuda":
        hardware = device.DeviceInfo()
    pad_multiple = device.pad_multiple(hardware, cfg.job.pad_to_multiple_of, tokenizer.model_max_length)
    logger.info(
        "batches padded to %s",
        f"a multiple of {pad_multiple} tokens" if pad_multiple else "their longest row (no multiple)",
    )
    said = device.apply_attention_backends(hardware, cfg.job.cudnn_attention)
    if said:
        logger.info(said)
    return pad_multiple


def run(cfg: Config, env: SageMakerEnv, hardware: device.DeviceInfo) -> dict[str, Any]:
    """Train and/or evaluate, then save the model dir. Returns all results. `hardware`: the device described once by
    the entry point (the one description parsing used too)."""
    args = cfg.training_args
    if env.local_rank == 0:  # once per host, in the processes the launcher started
        uploads.warn_uploaded_clutter(env.root / "code")
    model_name = check_model_path(cfg.job.model_name_or_path)
    directory = Path(args.output_dir)
    dist.check_world(args, dist.topology(env))  # never N processes each training alone
    claim.check_placement(directory, env)
    files.require_writable(cfg.written_dirs(env))
    tracking.check(cfg, env)  # report_to=tensorboard: its folder apart from checkpoints and model, and writable
    with signals.interrupt_process_on_signal(lambda: _nothing_trained(directory)):
        raw = data.select_splits(cfg, env)
        trains = "train" in raw
        if trains:
            _claim(cfg, env, directory)
        tokenizer = load_tokenizer(model_name, cfg.job.trust_remote_code, cfg.job.tokenizer_name)
        task = cfg.task_cls(cfg.task_args, tokenizer)
        raw = task.prepare(raw)  # columns, labels and windows are checked before the model is loaded
        fingerprints = cache.data_fingerprints(raw) if trains else {}
        run_id = _run_identity(cfg, task, model_name, tokenizer, fingerprints) if trains else None

        set_seed(args.seed)
        smdist.init_model_parallel(cfg)  # SMP v2: torch.sagemaker.init() before the model is built
        model = load(
            task.model_class, model_name, "model", trust_remote_code=cfg.job.trust_remote_code, **task.model_kwargs()
        )
        task.configure(model, args)
        model = lora.adapt(model, cfg.job, task, args)  # use_lora: the adapters, the task's head trained in full
        resume = _resume_point(cfg, env, directory, run_id, model) if trains else None
        with args.main_process_first(desc="preprocessing"):
            datasets = _preprocess(cfg, env, task, raw, tokenizer, model, fingerprints)
        pad_multiple = _fit_device(cfg, tokenizer, hardware)
        evaluations = Evaluations(task)  # Trainer's compute_metrics; keeps the last evaluation's predictions
        stopper = SaveOrStop(cfg.job.sigterm_grace_seconds, cfg.job.save_every_minutes)  # fed by signals.py
        trainer = training.build_trainer(
            cfg,
            env,
            task,
            model,
            tokenizer,
            datasets,
            run_id,
            stopper,
            pad_multiple=pad_multiple,
            evaluations=evaluations,
        )

    # Through the final evaluation and save, which a signal after the last step lets finish; the failure file when
    # the grace runs out.
    with (
        signals.save_or_stop_process_on_signal(stopper, lambda reason: outputs.write_failure(env.output_dir, reason)),
        tracking.reporting(trainer, resume),  # report_to: MLflow's run and TensorBoard's files end after the last log
    ):
        train_results: dict[str, Any] = {}
        eval_results: dict[str, Any] = {}
        if "train" in raw:
            train_results = {**training.train(trainer, resume, stopper), "train_samples": len(raw["train"])}
        if "eval" in raw:
            eval_results = {
                **(training.final_evaluation(trainer) or trainer.evaluate()),
                "eval_samples": len(raw["eval"]),
            }
        eval_predictions, test_results, test_predictions = evaluations.last, {}, None
        if "test" in raw:
            test_results, test_predictions = training.predict(
                trainer, _evaluated(task, raw, datasets, "test"), evaluations
            )
            test_results["test_samples"] = len(raw["test"])

        training.save_model(trainer, env.model_dir, cfg.job.merge_adapters)
        if trainer.is_world_process_zero():
            deployable.make_deployable(env.model_dir, tokenizer.model_input_names, task, args)
            task.write_predictions(env.output_data_dir, eval_predictions)
            if "test" in raw:
                task.write_predictions(env.output_data_dir, test_predictions, split="test")
            sizes = {split: len(raw[split]) for split in raw}
            outputs.write_all(
                cfg, env, task.card(), model_name, sizes, train_results, eval_results, resume, test_results
            )
        training.push_model(trainer, env.model_dir)
    return {**train_results, **eval_results, **test_results}


def _evaluated(task: Task, raw: Any, datasets: dict[str, Any], split: str) -> Any:
    """The split's features longest first (batches of similar lengths pad little, and memory runs out, if it does,
    at once), and the task's evaluation state set to its rows (set_eval), so score maps predictions back. The test
    set's after the final evaluation."""
    order = length_order(datasets[split])
    features = datasets[split].select(order)
    task.set_eval(raw[split], features, order)
    return features
