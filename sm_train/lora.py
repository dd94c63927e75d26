"""LoRA fine-tuning (use_lora, with peft): the checks made at parse time, the model wrapped after it loads, and what
the final save adds to an adapter-only model dir. peft is imported only when a job uses it.

The task's head (a classifier, QA outputs) is new and random in the base model: it is trained and saved in full
(peft's modules_to_save), the rest of the model stays frozen under the adapters. Checkpoints hold the adapter and
the head only (adapter_model.safetensors, adapter_config.json); the final save merges them into a plain model
(merge_adapters=true) or keeps them apart beside the task's config.json (merge_adapters=false)."""

from __future__ import annotations

import copy
import importlib.metadata
import logging
from pathlib import Path
from typing import Any

from sm_train.errors import ConfigError
from sm_train.trajectory import LORA

logger = logging.getLogger(__name__)

# The first peft release that runs on transformers 5 (and the floor of the sm_train[peft] extra); older transformers
# take it too. transformers' own MIN_PEFT_VERSION is not used: it guards transformers' adapter-loading mixin
# (load_adapter on a PreTrainedModel), which training does not call (Trainer resumes through peft's PeftModel), and
# 5.24 sets it above every peft release there is.
MIN_PEFT = {5: "0.18.0", 4: "0.18.0"}
# The settings that make the adapter: another value makes tensors of other shapes or names, which the same-run rule
# names instead of setting the checkpoint aside as another model's.
SETTINGS = ("use_lora", *LORA)
ALL_LINEAR = "all-linear"
INSTALL = "add it to requirements.txt in source_dir (the job installs it before training), or install sm_train[peft]"


def required_peft(transformers_version: str | None = None) -> str:
    """The oldest peft that runs with this transformers (the installed one when not given)."""
    from packaging.version import Version

    major = Version(transformers_version or importlib.metadata.version("transformers")).major
    return MIN_PEFT.get(major, MIN_PEFT[max(MIN_PEFT)])


def peft_problem() -> str | None:
    """Why use_lora cannot run with the installed packages: peft missing, or older than transformers needs."""
    from packaging.version import Version

    need = required_peft()
    try:
        found = importlib.metadata.version("peft")
    except importlib.metadata.PackageNotFoundError:
        return f"use_lora=true needs the peft package, which is not installed: pip install 'peft>={need}' ({INSTALL})."
    if Version(found) < Version(need):
        transformers = importlib.metadata.version("transformers")
        return (
            f"use_lora=true needs peft {need} or newer with transformers {transformers}, and peft {found} is "
            f"installed: pip install 'peft>={need}' ({INSTALL})."
        )
    return None


def check(job: Any, args: Any) -> None:
    """use_lora's problems known at parse time: peft, and the sharded trainings sm_train does not run it under."""
    if not job.use_lora:
        return
    problem = peft_problem()
    if problem:
        raise ConfigError(problem, key="use_lora")
    from sm_train.smdist import parse_mp_parameters

    sharded = [
        name
        for name, used in (
            ("SageMaker model parallel (mp_parameters)", parse_mp_parameters(job.smp_parameters)),
            ("FSDP (fsdp)", args.fsdp),
            ("DeepSpeed (deepspeed)", args.deepspeed),
        )
        if used
    ]
    if sharded:
        raise ConfigError(
            f"use_lora=true does not run with {sharded[0]} in sm_train: its adapter checkpoints, exact resume and "
            "merged final save are built for a model every process holds whole. LoRA trains a small share of the "
            "weights, so plain data parallel (torchrun, one process per GPU) usually fits the memory: remove the "
            "sharding settings, or set use_lora=false to shard a full fine-tuning.",
            key="use_lora",
        )


def heads(model: Any) -> list[str]:
    """The task's head: the model's top-level modules with weights beside its base model (classifier, qa_outputs,
    BART's classification_head)."""
    prefix = getattr(model, "base_model_prefix", "")
    return [name for name, child in model.named_children() if name != prefix and any(True for _ in child.parameters())]


def _targets_all_linear(names: list[str] | None) -> bool:
    return not names or [n.lower() for n in names] == [ALL_LINEAR]


def _targets(job: Any) -> str | list[str]:
    return ALL_LINEAR if _targets_all_linear(job.lora_target_modules) else list(job.lora_target_modules)


def _check_targets(model: Any, names: list[str] | None) -> None:
    """Each module name given must name some of the model's modules, as peft matches them (the full name or its
    ending); peft's own error names none of the modules there are."""
    if _targets_all_linear(names):
        return
    import torch

    modules = [name for name, _ in model.named_modules() if name]
    missing = [n for n in names or () if not any(m == n or m.endswith(f".{n}") for m in modules)]
    if missing:
        linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        raise ConfigError(
            f"lora_target_modules={names}: {', '.join(missing)} names no module of {type(model).__name__}; its "
            f"linear layers are named {', '.join(sorted(linear))}. Give some of those, or all-linear.",
            key="lora_target_modules",
        )


def adapt(model: Any, job: Any, task: Any, args: Any) -> Any:
    """The model wrapped with LoRA adapters when use_lora (else as it is), its head trained in full; logs what
    trains. The task declares peft's task type (Task.lora_task_type)."""
    if not job.use_lora:
        return model
    task_type = getattr(task, "lora_task_type", None)
    if task_type is None:
        raise ConfigError(
            f"use_lora=true, but the task {task.name} declares no LoRA task type (its class's lora_task_type, one "
            "of peft's TaskType names); set use_lora=false.",
            key="use_lora",
        )
    from peft import LoraConfig, TaskType, get_peft_model

    if getattr(args, "gradient_checkpointing", False):
        # The frozen embeddings give checkpointed blocks inputs without gradients, and their LoRA weights none.
        model.enable_input_require_grads()
    trained = heads(model) if task_type in ("SEQ_CLS", "QUESTION_ANS", "TOKEN_CLS") else []
    config = LoraConfig(
        r=job.lora_r,
        lora_alpha=job.lora_alpha,
        lora_dropout=job.lora_dropout,
        target_modules=_targets(job),
        task_type=TaskType[task_type],
        modules_to_save=list(trained) or None,  # peft extends the list it is given
    )
    _check_targets(model, job.lora_target_modules)
    adapted = get_peft_model(model, config)
    saved = adapted.peft_config["default"]
    if saved.modules_to_save:  # peft adds its default head names to ours: each once
        saved.modules_to_save = list(dict.fromkeys(saved.modules_to_save))
    logger.info(
        "LoRA (rank %d, alpha %d): %s; trained in full: %s",
        job.lora_r,
        job.lora_alpha,
        describe(adapted),
        ", ".join(trained) or "nothing",
    )
    return adapted


def describe(model: Any) -> str:
    """'trainable parameters: N of M (x%)'."""
    trainable, total = model.get_nb_trainable_parameters()
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%)"


def merged(model: Any) -> Any:
    """The plain model with the adapters merged into its weights and the trained head in place (peft's
    merge_and_unload: the peft model is used up)."""
    plain = model.merge_and_unload()
    logger.info("LoRA adapters merged into %s for the final save (merge_adapters=true)", type(plain).__name__)
    return plain


def complete_adapter_dir(model: Any, directory: Path) -> None:
    """Beside the adapter Trainer saved: the task's config.json (labels, problem type: a base model loaded by its
    name alone would get a random head of 2 labels) and, for a generating model, generation_config.json. (The base
    model the adapter names is checked for an endpoint by deployable.make_deployable.)"""
    base = model.get_base_model()
    config = copy.deepcopy(base.config)
    config.architectures = [type(base).__name__]
    config.save_pretrained(str(directory))
    if base.can_generate() and getattr(base, "generation_config", None) is not None:
        base.generation_config.save_pretrained(str(directory))


def other_settings(recorded: dict[str, Any] | None, current: dict[str, Any] | None) -> bool:
    """Whether a checkpoint's run (trajectory.identity) had other LoRA settings than this one: its tensors then
    cannot load here, and the same-run rule is what should name the change."""
    if not recorded or not current:
        return False
    return any(recorded[name] != current[name] for name in SETTINGS if name in recorded and name in current)
