"""What decides where a run's training goes: recorded in every checkpoint, compared before resuming from one.

Resuming continues the old run. When anything that changes its result differs (the data, the model, the labels, the
learning rate, the batch size, ...), continuing would produce weights that no setting describes, so the job refuses
(a reused checkpoint_s3_uri is a common mistake). Every setting counts except those that only extend or observe a
run (FREE, EXTEND), which the README lists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from sm_train.checkpoint import SUPERSEDED_DIR
from sm_train.errors import ConfigError
from sm_train.redact import is_secret_key

logger = logging.getLogger(__name__)

# Settings that only observe, schedule around or extend a run: a restart may change them and still resume.
FREE = frozenset(
    {
        # where things go and how the job stops and resumes
        "model_name_or_path", "tokenizer_name",  # the model and tokenizer are compared by content (fingerprints)
        "checkpoint_dir", "resume", "resume_from_checkpoint", "save_every_minutes", "sigterm_grace_seconds",
        "output_dir", "overwrite_output_dir", "train_file", "validation_file", "test_file", "dataset_name",
        "dataset_config_name", "num_proc", "do_train", "do_eval", "do_predict", "local_rank",
        # logging and reporting
        "logging_strategy", "logging_steps", "logging_first_step", "logging_nan_inf_filter", "logging_dir",
        "log_level", "log_level_replica", "log_on_each_node", "disable_tqdm", "report_to", "run_name", "project",
        "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id", "include_num_input_tokens_seen",
        "include_tokens_per_second", "skip_memory_metrics", "debug", "tensorboard_dir",
        # checkpoint cadence and retention, the Hub
        "save_strategy", "save_steps", "save_total_limit", "save_on_each_node", "save_only_model",
        "save_safetensors", "enable_jit_checkpoint", "restore_callback_states_from_checkpoint", "push_to_hub",
        "hub_token", "hub_private_repo", "hub_model_id", "hub_strategy", "hub_always_push", "hub_revision",
        # evaluation: when and how, never what is trained
        "eval_strategy", "eval_steps", "eval_delay", "eval_on_start", "per_device_eval_batch_size",
        "eval_accumulation_steps", "prediction_loss_only", "include_for_metrics", "batch_eval_metrics",
        "eval_do_concat_batches", "eval_use_gather_object", "bf16_full_eval", "fp16_full_eval", "max_eval_samples",
        "predict_with_generate", "generation_max_length", "generation_num_beams", "generation_config",
        "val_max_target_length", "n_best_size", "max_answer_length", "null_score_diff_threshold",
        # data loading speed
        "dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers",
        "dataloader_prefetch_factor", "dataloader_multiprocessing_context", "torch_empty_cache_steps",
        "ddp_timeout", "ddp_bucket_cap_mb",
        # the final save only: the adapters merged into the model or saved apart (use_lora)
        "merge_adapters",
    }
)  # fmt: skip
EXTEND = ("num_train_epochs", "max_steps")  # may be raised, not lowered
LORA = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")  # count only in a run with use_lora
HASHED = ("tokenizer",)  # facts recorded as fingerprints, like "<split> data"
CHUNK = 1 << 20


def model_fingerprint(name: str) -> str:
    """A local model (wherever it lies): its config and, per weights file, the size and the first and last MiB (whole
    files can be tens of GB). A Hub id is its name."""
    path = Path(name)
    if not path.is_dir():
        return name
    digest = hashlib.blake2b(digest_size=12)
    for file in sorted(path.iterdir()):
        if file.name == "config.json" or file.suffix in (".safetensors", ".bin"):
            size = file.stat().st_size
            digest.update(f"{file.name}:{size}".encode())
            with file.open("rb") as f:
                digest.update(f.read(CHUNK) if file.suffix != ".json" else f.read())
                f.seek(max(size - CHUNK, 0))
                digest.update(f.read(CHUNK))
    return f"local files {digest.hexdigest()}"


def _plain(value: Any) -> Any:
    """As it reads back from JSON, so a recorded value and a computed one compare equal."""
    return json.loads(json.dumps(value, default=str))


def identity(cfg: Any, model: str, tokenizer: str, data: dict[str, str], task_facts: dict[str, Any]) -> dict[str, Any]:
    """The run's settings that decide its trajectory. `data`: fingerprints of the training data (and of the
    evaluation data when evaluations pick the final model); `task_facts`: what the task read off the data (labels)."""
    settings = {
        **dataclasses.asdict(cfg.job),
        **dataclasses.asdict(cfg.task_args),
        **cfg.training_args.to_dict(),
    }
    unused = () if settings.get("use_lora") else LORA  # a run without adapters is the same run whatever they'd be
    kept = {k: v for k, v in settings.items() if k not in FREE and k not in unused and not is_secret_key(k)}
    # A fact named like a setting is what the task resolved it to (problem_type auto -> regression): both count.
    resolved = {f"{k} (resolved)" if k in kept else k: v for k, v in task_facts.items()}
    facts = {"task": cfg.task_cls.name, "model": model, "tokenizer": tokenizer, **resolved}
    facts |= {f"{split} data": fingerprint for split, fingerprint in data.items()}
    return _plain({**facts, **kept})


def check_same_run(path: Path, recorded: dict[str, Any] | None, current: dict[str, Any]) -> None:
    """Fail before training when the checkpoint was made by a run with other settings."""
    if recorded is None:
        logger.warning("%s does not record its run's settings (an earlier sm_train wrote it): not compared", path)
        return
    changed = differences(recorded, current)
    if not changed:
        return
    shown = "; ".join(changed[:8]) + (f"; and {len(changed) - 8} more" if len(changed) > 8 else "")
    raise ConfigError(
        f"Not resuming from {path}: it was made by a run with other settings, and continuing it would give weights "
        f"that neither run's settings describe. Changed: {shown}. To start afresh, set resume=never (the earlier "
        f"checkpoints are moved to {path.parent / SUPERSEDED_DIR}, not deleted); to keep both runs, give this job a "
        "new checkpoint location (the estimator's checkpoint_s3_uri, or checkpoint_dir)."
    )


def _lowered(name: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
    if name == "num_train_epochs" and min(old.get("max_steps", -1), new.get("max_steps", -1)) > 0:
        return False  # max_steps decides the length in both runs
    return new[name] < old[name]


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'name: old -> new' for each setting that differs and must not (names only one side has are skipped: another
    transformers version)."""
    found = []
    for name in old.keys() & new.keys():
        if old[name] == new[name] or (name in EXTEND and not _lowered(name, old, new)):
            continue
        if name in HASHED or name.endswith(" data") or str(old[name]).startswith("local files"):
            found.append(f"{name}: its content changed")
            continue
        lowered = " (may be raised, not lowered)" if name in EXTEND else ""
        found.append(f"{name}: {_short(old[name])} -> {_short(new[name])}{lowered}")
    return sorted(found)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
