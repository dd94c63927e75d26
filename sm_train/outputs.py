"""Files written beside the model: results JSON, the model card, the resolved configuration, the failure file (the
model dir itself made deployable: deployable.py)."""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import shutil
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from sm_train.redact import redact_mapping

logger = logging.getLogger(__name__)

PACKAGES = ("sm_train", "transformers", "torch", "datasets", "accelerate", "tokenizers", "safetensors", "scikit-learn")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


MAX_FAILURE_CHARS = 1024  # SageMaker shows the first 1024 characters as FailureReason


def write_failure(output_dir: Path, reason: str) -> None:
    """Write the failure file unless one exists: the first error (of any rank) is the one that matters. An output
    dir that cannot be written gets one log line: the reason itself is already in the log."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(output_dir / "failure", "x", encoding="utf-8") as f:
            f.write(reason[:MAX_FAILURE_CHARS])
    except FileExistsError:
        pass
    except OSError as e:
        logger.warning("could not write the failure file in %s (%s: %s)", output_dir, type(e).__name__, e)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def write_results(
    directories: Iterable[Path], train: Mapping[str, Any], evaluation: Mapping[str, Any], test: Mapping[str, Any]
) -> None:
    """train_results.json, eval_results.json, test_results.json and all_results.json, as the transformers example
    scripts name them."""
    for directory in directories:
        for name, results in (("train", train), ("eval", evaluation), ("test", test)):
            if results:
                write_json(directory / f"{name}_results.json", dict(results))
        write_json(directory / "all_results.json", {**train, **evaluation, **test})


def evaluation_schedule(args: Any, sizes: Mapping[str, int]) -> str | bool:
    """When the job evaluates: False without evaluation data; otherwise Trainer's schedule during training (its
    eval_strategy) and the final evaluation sm_train always runs."""
    if "eval" not in sizes:
        return False
    if "train" not in sizes:
        return "once, without training"
    during = ["at the start"] if getattr(args, "eval_on_start", False) else []
    strategy = getattr(args.eval_strategy, "value", args.eval_strategy)
    if strategy == "steps":  # eval_steps below 1 is a share of the training steps
        steps = args.eval_steps
        during.append(f"every {int(steps)} steps" if steps >= 1 else f"every {steps:.0%} of the training steps")
    elif strategy == "epoch":
        during.append("every epoch")
    return ", ".join(during) + " and at the end" if during else "at the end"


def _training_args(args: Any, sizes: Mapping[str, int] | None) -> dict[str, Any]:
    """The training arguments as the job used them. TrainingArguments.to_dict writes '<HUB_TOKEN>' for every
    *_token field, set or not: the values themselves go to redact_mapping, which hides only set secrets. sm_train
    decides training and evaluation from the data present (data.select_splits), not from do_train/do_eval: those
    record what ran."""
    found = args.to_dict()
    found.update({key: getattr(args, key) for key in found if key.endswith("_token")})
    if sizes is not None:
        found.update(do_train="train" in sizes, do_eval="eval" in sizes)
    return redact_mapping(found)


def resolved_config(
    cfg: Any,
    task_facts: Mapping[str, Any],
    env: Any,
    resumed_from: str | None = None,
    sizes: Mapping[str, int] | None = None,
    planned: bool = False,
) -> dict[str, Any]:
    """Everything this job ran with: hyperparameters as given, as parsed, the environment and package versions, and
    the checkpoint an earlier attempt of the same run left (resuming requires the same settings: trajectory.py).

    sizes: the rows of each split the job used; with them the record says what the job did ("ran"), or, planned
    (`check`), what it will do ("will_run")."""
    found = {
        "task": cfg.task_cls.name,
        "resumed_from": resumed_from,
        "hyperparameters": cfg.redacted(),
        "hyperparameters_source": env.hyperparameters_source,
        "job": redact_mapping(dataclasses.asdict(cfg.job)),
        "task_args": redact_mapping(dataclasses.asdict(cfg.task_args)),
        "training_args": _training_args(cfg.training_args, sizes),
        "task_facts": dict(task_facts),
        "environment": {
            "hosts": list(env.hosts),
            "current_host": env.current_host,
            "num_gpus": env.num_gpus,
            "num_cpus": env.num_cpus,
            "job_name": env.job_name,
            "tuning_objective": env.tuning_objective,
            "model_dir": str(env.model_dir),
            "checkpoint_dir": str(env.checkpoint_dir),
        },
        "versions": versions(),
    }
    if sizes is not None:
        done = {"trained": "train" in sizes, "evaluated": evaluation_schedule(cfg.training_args, sizes)}
        if planned:
            done = {"trains": done["trained"], "evaluates": done["evaluated"]}
        found["will_run" if planned else "ran"] = {**done, "rows": dict(sizes)}
    return found


def write_all(
    cfg: Any,
    env: Any,
    task_facts: Mapping[str, Any],
    model_name: str,
    sizes: Mapping[str, int],
    train: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    resumed_from: str | None,
    test: Mapping[str, Any],
) -> None:
    """Results, the resolved configuration and the model card (rank 0, after the model is saved)."""
    write_results((env.model_dir, env.output_data_dir), train, evaluation, test)
    write_json(
        env.output_data_dir / "sm_train_config.json", resolved_config(cfg, task_facts, env, resumed_from, sizes)
    )
    card = model_card(
        task=cfg.task_cls.name,
        base_model=model_name,
        sizes=sizes,
        hyperparameters=cfg.hyperparameters,
        train=train,
        evaluation=evaluation,
        task_facts=task_facts,
    )
    (env.model_dir / "README.md").write_text(card, encoding="utf-8")
    logger.info("model saved to %s", env.model_dir)


def _table(rows: Mapping[str, Any], header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in rows.items()]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def model_card(
    *,
    task: str,
    base_model: str,
    sizes: Mapping[str, int],
    hyperparameters: Mapping[str, Any],
    train: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    task_facts: Mapping[str, Any],
) -> str:
    """A README.md: what was trained from what, on how much data, with which settings, and how well."""
    is_hub_id = not base_model.startswith(("/", ".", "~"))
    front = ["---", "library_name: transformers", f"pipeline_tag: {task}", "tags:", "- sm_train", "- sagemaker"]
    if is_hub_id:
        front.append(f"base_model: {base_model}")
    front.append("---")
    sections = [
        "\n".join(front),
        f"# {task} model fine-tuned with sm_train",
        f"- Task: `{task}`\n- Base model: `{base_model}`\n"
        + "".join(f"- {split.capitalize()} rows: {count}\n" for split, count in sizes.items()),
    ]
    if task_facts.get("labels"):
        sections.append("## Labels\n\n" + ", ".join(f"`{label}`" for label in task_facts["labels"]))
    sections.append("## Hyperparameters\n\n" + _table(redact_mapping(hyperparameters), ("name", "value")))
    if train:
        sections.append("## Training results\n\n" + _table(train, ("metric", "value")))
    if evaluation:
        sections.append("## Evaluation results\n\n" + _table(evaluation, ("metric", "value")))
    sections.append("## Framework versions\n\n" + "\n".join(f"- {k} {v}" for k, v in versions().items()))
    return "\n\n".join(sections) + "\n"


class OutputGuard:
    """Remembers what a directory held at the start so a failed job can remove everything it added."""

    def __init__(self, directories: Iterable[Path]) -> None:
        self.before = {d: set(d.iterdir()) if d.is_dir() else set() for d in directories}

    def clean(self) -> None:
        for directory, before in self.before.items():
            if not directory.is_dir():
                continue
            for path in set(directory.iterdir()) - before:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
