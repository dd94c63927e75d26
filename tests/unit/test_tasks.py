"""The Task contract (sm_train/tasks/base.py), for every registered task: its hyperparameters parse beside the job's
and Trainer's, and its hooks run in the documented order on a tiny set, through an evaluation and its outputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from sm_train.config import parse
from sm_train.env import from_environ
from sm_train.tasks import TASKS, Task
from sm_train.tasks.base import length_order
from tests import tiny


def _classification(n: int, seed: int = 0) -> list[dict]:
    return [{"text": text, "label": label} for text, label in tiny.sentences(n, seed)]


# Per registered task: tiny rows, a tiny model of the kind it fine-tunes, and hyperparameters that fit the tiny model.
# A new task adds its line here.
TINY = {
    "text-classification": (_classification, tiny.build_encoder, {}),
    "question-answering": (tiny.qa_rows, tiny.build_encoder, {"max_seq_length": 64, "doc_stride": 24}),
    "summarization": (tiny.dialogues, tiny.build_seq2seq, {"max_source_length": 64}),
}


def test_every_registered_task_has_a_tiny_set() -> None:
    assert set(TINY) == set(TASKS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_hyperparameters_parse_beside_the_job_and_trainer_ones(name, tmp_path) -> None:
    """One parser over the job's, the task's and Trainer's fields: a task field that clashes fails here."""
    task_cls = TASKS[name]
    cfg = parse(
        [("task", name), ("model_name_or_path", str(tmp_path))], from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    )
    assert isinstance(cfg.task_args, task_cls.Args) and isinstance(cfg.training_args, task_cls.training_args_class)
    for key, value in task_cls.training_defaults.items():
        assert getattr(cfg.training_args, key) == value
    assert task_cls.metric_names and task_cls.model_class is not None


def _evaluate(task: Task, model, features: Dataset, output_dir: Path) -> dict[str, float]:
    """An evaluation as the job runs it: the task's Trainer class, collator and metric hooks."""
    args = task.training_args_class(
        output_dir=str(output_dir), report_to="none", use_cpu=True, per_device_eval_batch_size=4,
        **task.training_defaults,
    )  # fmt: skip
    trainer = task.trainer_class(
        model=model,
        args=args,
        eval_dataset=features,
        processing_class=task.tokenizer,
        data_collator=task.collator(model),
        compute_metrics=task.compute_metrics,
        preprocess_logits_for_metrics=task.preprocess_logits,
    )
    return trainer.evaluate()


@pytest.mark.parametrize("name", sorted(TASKS))
def test_hooks_run_in_the_documented_order(name, tmp_path) -> None:
    task_cls = TASKS[name]
    rows, build_model, hyperparameters = TINY[name]
    model_dir = build_model(tmp_path / "model")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    args = task_cls.Args(**hyperparameters)
    raw = DatasetDict({"train": Dataset.from_list(rows(12)), "eval": Dataset.from_list(rows(8, seed=1))})
    given = dict(raw)

    task = task_cls(args, tokenizer)  # 1. built with its hyperparameters and the tokenizer
    assert (task.predictions, task.eval_order) == (None, None)
    prepared = task.prepare(raw)  # 2. the raw splits, before any model
    assert isinstance(prepared, DatasetDict) and set(prepared) == {"train", "eval"}
    assert dict(raw) == given and all(raw[s] is given[s] for s in given)  # the given splits are not changed
    json.dumps(task.card())  # read for the run identity, here already
    model = task_cls.model_class.from_pretrained(model_dir, **task.model_kwargs())  # 3.
    task.configure(model, task_cls.training_args_class(output_dir=str(tmp_path / "out"), report_to="none"))
    features = {  # 4.
        split: task.preprocess(prepared[split], training=split == "train") for split in ("train", "eval")
    }
    assert "labels" in features["train"].column_names or "start_positions" in features["train"].column_names
    task.eval_order = length_order(features["eval"])  # 5. as the runner orders evaluation features
    ordered = features["eval"].select(task.eval_order)
    task.set_eval(prepared["eval"], ordered)
    task.pad_multiple = 8  # 6. set by the runner for the device before the collator is built
    batch = task.collator(model)(list(features["train"].select(range(3))))
    assert batch["input_ids"].shape[1] % 8 == 0
    results = _evaluate(task, model, ordered, tmp_path / "eval")  # 7.
    timings = {"loss", "runtime", "samples_per_second", "steps_per_second", "model_preparation_time", "epoch"}
    computed = {k.removeprefix("eval_") for k in results} - timings
    assert computed and computed <= set(task_cls.metric_names)  # the names the metric definitions publish
    task.write_predictions(tmp_path / "predictions")  # 8.
    json.dumps(task.card())

    # A restarted attempt reads the features from the tokenized cache and skips preprocess: nothing after it may
    # depend on state preprocess set.
    again = task_cls(dataclasses.replace(args), tokenizer)
    again.configure(model, task_cls.training_args_class(output_dir=str(tmp_path / "out"), report_to="none"))
    again.eval_order = task.eval_order
    again.set_eval(again.prepare(raw)["eval"], ordered)
    assert _evaluate(again, model, ordered, tmp_path / "again").keys() == results.keys()
