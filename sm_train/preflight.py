"""`python -m sm_train check`: a job checked in seconds, without training, every problem reported at once.

The job's own steps, in its order (runner.py), each one's UserError collected instead of ending the check: the
hyperparameters (config.parse, every problem collected), the model path, the checkpoint dir's placement and the
folders written, the data (data.select_splits), the tokenizer, the task's checks (task.prepare on all splits, then on
each split alone to find what the first problem hid), the model; then a sample tokenized (token lengths against the
limits), the steps per epoch, and one forward and backward pass on two examples on the CPU (the model called
directly: Trainer lives in training.py). Each stage says one `[ok]` or `[problem]` line; the numbered problems come
last. Nothing is written: no checkpoint, no model dir files; `--verbose` prints the resolved configuration.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from datasets import Dataset, DatasetDict

from sm_train import claim, config, data, device, files, local, lora, models, outputs
from sm_train.env import SageMakerEnv, from_environ
from sm_train.errors import ConfigError, UserError
from sm_train.reasons import failure_reason
from sm_train.tasks import Task
from sm_train.tasks.base import token_lengths

logger = logging.getLogger(__name__)
T = TypeVar("T")
SAMPLE_ROWS = 1000  # rows tokenized per split for the length report


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@dataclass
class Report:
    """The problems found so far, one line per stage that failed."""

    problems: list[str] = field(default_factory=list)
    speaks: bool = False  # the job's own report says "[problem] <stage>" once per stage; the nested ones do not

    def attempt(self, stage: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """function(...), or None with its problem recorded: a UserError's reason, or the reason a job's failure file
        would give for another library's error."""
        try:
            return function(*args, **kwargs)
        except UserError as error:
            self.add(stage, str(error))
        except Exception as error:  # the model, tokenizer or data libraries: the check goes on with the next stage
            logger.info("%s: %s", stage, error, exc_info=True)
            self.add(stage, failure_reason(error))
        return None

    def add(self, stage: str, problem: str) -> None:
        self.extend([f"{stage}: {problem}"])

    def extend(self, problems: list[str]) -> None:
        for problem in (p for p in problems if p not in self.problems):
            stage = problem.split(": ", 1)[0]
            if self.speaks and not any(p.startswith(f"{stage}: ") for p in self.problems):
                say(f"[problem] {stage}: listed below")
            self.problems.append(problem)


def _task_checks(report: Report, cfg: config.Config, raw: DatasetDict, tokenizer: Any) -> tuple[Task, Any] | None:
    """task.prepare on the job's splits, as the job runs it. When that fails and the training data alone fails too,
    the evaluation data is checked alone as well: a bad label in one and a missing column in the other are both
    reported. Otherwise the problem is the one the job would report (e.g. evaluation labels unseen in training)."""
    task, together = cfg.task_cls(cfg.task_args, tokenizer), Report()
    prepared = together.attempt("data", task.prepare, raw)
    if prepared is not None:
        say(f"[ok] task checks ({cfg.task_cls.name}): {', '.join(f'{s} {len(prepared[s])} rows' for s in prepared)}")
        return task, prepared
    alone = Report()
    if len(raw) > 1:
        alone.attempt("train data", cfg.task_cls(cfg.task_args, tokenizer).prepare, DatasetDict(train=raw["train"]))
    if not alone.problems:
        report.extend(together.problems)
        return None
    evaluation = Report()  # its problems but those the training data has too (one missing column, said once)
    evaluation.attempt("eval data", cfg.task_cls(cfg.task_args, tokenizer).prepare, DatasetDict(eval=raw["eval"]))
    report.extend(
        alone.problems + [p for p in evaluation.problems if p.replace("eval", "train") not in alone.problems]
    )
    return None


def _sample(dataset: Dataset, size: int = SAMPLE_ROWS) -> Dataset:
    if len(dataset) <= size:
        return dataset
    return dataset.select(sorted(random.Random(0).sample(range(len(dataset)), size)))


def _distribution(lengths: np.ndarray, limit: int | None) -> str:
    if not len(lengths):
        return "no inputs"
    p50, p95 = np.percentile(lengths, [50, 95])
    text = f"tokens min {lengths.min()}, median {p50:.0f}, p95 {p95:.0f}, max {lengths.max()}"
    if limit:
        at_limit = int((lengths >= limit).sum())
        share = 100 * at_limit / len(lengths)
        text += f"; {at_limit} of {len(lengths)} ({share:.1f}%) at the limit of {limit} (truncated)"
    return text


def _lengths(report: Report, task: Task, raw: Mapping[str, Dataset]) -> dict[str, Dataset]:
    """A sample of each split tokenized as the job will, with its token lengths against the task's limits."""
    features = {}
    for split, dataset in raw.items():
        sample = _sample(dataset)
        made = report.attempt(f"{split} tokenization", task.preprocess, sample, training=split == "train")
        if made is None:
            continue
        features[split] = made
        say(f"[ok] {split}: {len(sample)} of {len(dataset)} rows tokenized into {len(made)} inputs")
        say(f"     inputs: {_distribution(token_lengths(made), task.max_length)}")
        if "labels" in made.column_names and len(made) and isinstance(made[0]["labels"], list):
            labels = np.array([len(row) for row in made["labels"]])
            say(f"     labels: {_distribution(labels, task.target_length(training=split == 'train'))}")
    return features


def _steps(cfg: config.Config, raw: Mapping[str, Dataset], features: Mapping[str, Dataset]) -> None:
    if "train" not in features:
        return
    args = cfg.training_args
    inputs = round(len(raw["train"]) * len(features["train"]) / max(len(_sample(raw["train"])), 1))
    batches = math.ceil(inputs / (args.train_batch_size * max(args.world_size, 1)))
    per_epoch = max(batches // args.gradient_accumulation_steps, 1)
    total = args.max_steps if args.max_steps > 0 else math.ceil(per_epoch * args.num_train_epochs)
    say(
        f"[ok] about {per_epoch} steps per epoch ({inputs} training inputs, {args.train_batch_size} per device x "
        f"{max(args.world_size, 1)} processes x {args.gradient_accumulation_steps} accumulation), {total} in all"
    )


def _one_step(task: Task, model: Any, raw: Mapping[str, Dataset]) -> None:
    """One forward and backward pass on two training examples, on the CPU, Trainer left out."""
    from transformers import default_data_collator

    split = raw["train"] if "train" in raw else next(iter(raw.values()))
    two = task.preprocess(split.select(range(min(2, len(split)))), training=True)
    batch = (task.collator(model, None) or default_data_collator)([two[i] for i in range(min(2, len(two)))])
    model.train()
    started = time.perf_counter()
    loss = model(**batch).loss
    if loss is None:
        raise UserError("the model returned no loss on the training inputs: their labels are missing.")
    loss.backward()
    model.zero_grad(set_to_none=True)
    say(f"[ok] one training step on 2 inputs (CPU): loss {loss.item():.4f}, {time.perf_counter() - started:.2f} s")


def _model_stages(report: Report, cfg: config.Config, model_name: str, task: Task, raw: Any) -> None:
    trust = {"trust_remote_code": cfg.job.trust_remote_code, **task.model_kwargs()}
    model = report.attempt("model", models.load, task.model_class, model_name, "model", **trust)
    if model is None:
        return
    say(f"[ok] model: {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters")
    report.attempt("model", task.configure, model, cfg.training_args)
    adapted = report.attempt("LoRA", lora.adapt, model, cfg.job, task, cfg.training_args) if cfg.job.use_lora else None
    if adapted is not None:
        model = adapted
        say(f"[ok] LoRA: rank {cfg.job.lora_r}, {lora.describe(model)}")
    features = _lengths(report, task, raw)
    _steps(cfg, raw, features)
    report.attempt("training step", _one_step, task, model, raw)


def _parse(report: Report, env: SageMakerEnv, argv: Sequence[str]) -> config.Config | None:
    """The hyperparameters, every problem of them collected in the order given."""
    collected: list[str] = []
    parsing = Report()
    cfg = parsing.attempt(
        "hyperparameters", lambda: config.parse(config.source_items(env, argv), env, device.describe(), collected)
    )
    report.extend([f"hyperparameters: {problem}" for problem in collected] + parsing.problems)
    if cfg is not None and not collected:
        say(f"[ok] hyperparameters: {len(cfg.hyperparameters)} given, task {cfg.task_cls.name}")
    return cfg


def check_job(env: SageMakerEnv, argv: Sequence[str], verbose: bool = False) -> list[str]:
    """Every problem of the job in `env` (the hyperparameters from argv outside SageMaker). verbose: the resolved
    configuration printed after the stages, as the job would record it (sm_train_config.json)."""
    report = Report(speaks=True)
    cfg = _parse(report, env, argv)
    if cfg is None:
        return report.problems
    model_name = report.attempt("model", models.check_model_path, cfg.job.model_name_or_path)
    before = len(report.problems)
    report.attempt("checkpoint dir", claim.check_placement, Path(cfg.training_args.output_dir), env)
    for what, directory in cfg.written_dirs(env).items():
        problem = files.writable_problem(what, directory)
        if problem:
            report.add(what.removeprefix("the "), problem)
    if len(report.problems) == before:
        say(f"[ok] folders: {', '.join(w.removeprefix('the ') for w in cfg.written_dirs(env))} writable")
    raw = report.attempt("data", data.select_splits, cfg, env)
    if raw is not None:
        evaluates = outputs.evaluation_schedule(cfg.training_args, {split: 1 for split in raw})
        plan = ["trains"] * ("train" in raw) + [f"evaluates {evaluates}" if evaluates else "no evaluation"]
        say(f"[ok] data: {', '.join(f'{s} {len(raw[s])} rows' for s in raw)} (the job {'; '.join(plan)})")
    tokenizer = model_name and report.attempt(
        "tokenizer", models.load_tokenizer, model_name, cfg.job.trust_remote_code, cfg.job.tokenizer_name
    )
    if tokenizer:
        say(f"[ok] tokenizer: {type(tokenizer).__name__}, up to {tokenizer.model_max_length} tokens")
    # Without a tokenizer (the model is missing or broken) the columns and labels are still checked.
    prepared = _task_checks(report, cfg, raw, tokenizer or None) if raw is not None else None
    if prepared is not None and model_name and tokenizer:
        _model_stages(report, cfg, model_name, *prepared)
    if verbose:
        used = prepared[1] if prepared is not None else raw
        sizes = None if used is None else {split: len(used[split]) for split in used}
        resolved = outputs.resolved_config(cfg, {}, env, sizes=sizes, planned=True)
        say("resolved configuration (secrets redacted):\n" + json.dumps(resolved, indent=2, default=str))
    return report.problems


def _check_trees(request: local.Request, environ: Mapping[str, str], temporary: Path, verbose: bool) -> list[str]:
    if request.builds:
        root = local.prepare_tree(request, "check", request.roots[0] if request.roots else temporary)
        return check_job(from_environ(local.job_environment(environ, root)), [], verbose)
    problems = []
    for root in request.roots:
        local.prepare_tree(request, "check", root)  # an existing tree: nothing given to change in it
        say(f"== {root}")
        found = check_job(from_environ(local.job_environment(environ, root)), [], verbose)
        problems += [f"{root}: {problem}" for problem in found]
    return problems


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """`check`: 0 when the job would start training, 1 with every problem found, 2 for a usage error."""
    end = list(argv).index("--") if "--" in argv else len(argv)  # --verbose: check's own option, before --
    verbose, argv = "--verbose" in argv[:end], [a for i, a in enumerate(argv) if i >= end or a != "--verbose"]
    try:
        request = local.parse_request(argv, "check")
        with tempfile.TemporaryDirectory(prefix="sm_train-check-") as temporary:
            if request.builds or request.roots:
                problems = _check_trees(request, environ, Path(temporary), verbose)
            else:  # inside a tree: SAGEMAKER_BASE_DIR or /opt/ml, as the job itself reads it
                problems = check_job(from_environ(environ), request.arguments, verbose)
    except ConfigError as error:  # a config file of the tree is not what SageMaker writes: the job's problem
        problems = [f"job files: {error}"]
    except UserError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    if problems:
        say(f"check: {len(problems)} problem{'s' if len(problems) > 1 else ''}:")
        say("\n".join(f"  {i}. {problem}" for i, problem in enumerate(problems, 1)))
        return 1
    say("check: no problems found; nothing was trained or written.")
    return 0
