"""The Task contract (sm_train/tasks/base.py), for every registered task: its hyperparameters parse beside the job's
and Trainer's, and its hooks run in the documented order on a tiny set, through an evaluation and its outputs."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from sm_train.config import parse
from sm_train.data import load_path
from sm_train.env import from_environ
from sm_train.errors import DataError
from sm_train.tasks import TASKS, Task
from sm_train.tasks.base import length_order
from sm_train.tasks.text_classification import TextClassification, TextClassificationArgs
from tests import tiny
from tests.jobs import write_rows


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


# Without a tokenizer (`check` when it did not load), prepare still checks columns, types and labels.

MISSING = {"text-classification": "label", "question-answering": "question", "summarization": "summary"}


def test_every_registered_task_names_a_column_to_leave_out() -> None:
    assert set(MISSING) == set(TASKS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_prepare_runs_without_a_tokenizer(name) -> None:
    task_cls = TASKS[name]
    rows, _, hyperparameters = TINY[name]
    raw = DatasetDict({"train": Dataset.from_list(rows(12)), "eval": Dataset.from_list(rows(8, seed=1))})
    task = task_cls(task_cls.Args(**hyperparameters), None)
    prepared = task.prepare(raw)
    assert set(prepared) == {"train", "eval"} and (len(prepared["train"]), len(prepared["eval"])) == (12, 8)
    json.dumps(task.card())


@pytest.mark.parametrize("name", sorted(TASKS))
def test_without_a_tokenizer_a_missing_column_is_still_reported(name) -> None:
    task_cls = TASKS[name]
    rows, _, hyperparameters = TINY[name]
    column = MISSING[name]
    evaluation = [{k: v for k, v in row.items() if k != column} for row in rows(8, seed=1)]
    raw = DatasetDict({"train": Dataset.from_list(rows(12)), "eval": Dataset.from_list(evaluation)})
    with pytest.raises(DataError, match=rf"The eval data has no '{column}' column, which the train data has"):
        task_cls(task_cls.Args(**hyperparameters), None).prepare(raw)


# Text classification's labels: one spelling per class, one label whatever the file made of it.


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


def labelled(labels: list) -> list[dict]:
    return [{"text": f"row {i}", "label": label} for i, label in enumerate(labels)]


def classify(train: list[dict], evaluation: list[dict] | None = None, tokenizer=None, **args) -> TextClassification:
    """A text classification task (without a tokenizer unless given) prepared on these rows."""
    raw = {"train": Dataset.from_list(train)} | ({"eval": Dataset.from_list(evaluation)} if evaluation else {})
    task = TextClassification(TextClassificationArgs(**args), tokenizer)
    task.prepare(DatasetDict(raw))
    return task


@pytest.mark.parametrize(
    ("train", "evaluation", "pattern"),
    [
        (["pos", "neg", "pos ", "neg"], None, r"train data has labels .*: 'pos' vs 'pos '; "),
        (["pos", "neg", "Neg", "neg"], None, r"train data has labels .*: 'Neg' vs 'neg'; "),
        (["pos", "neg"], ["pos ", "neg"], r"train and eval data has labels .*: 'pos' vs 'pos '; "),
        (["pos", "neg"], ["POS", "pos"], r"eval data has labels .*: 'POS' vs 'pos'; "),
    ],
)
def test_labels_that_differ_only_by_case_or_whitespace_fail(train, evaluation, pattern) -> None:
    """'pos' and 'pos ' made 4 classes of 2, and the job trained on them without a word."""
    message = (
        r"Column 'label' of the .*differ only by case or surrounding whitespace: .* each spelling would become a "
        r"class of its own. Clean the labels \(strip the whitespace, one spelling per class\)"
    )
    with pytest.raises(DataError, match=pattern) as caught:
        classify(labelled(train), labelled(evaluation) if evaluation else None)
    assert re.search(message, str(caught.value))
    assert classify(labelled(["pos", "neg", "positive"]), labelled(["neg"])).label_names == ["neg", "pos", "positive"]


def test_integer_labels_and_their_decimal_strings_are_one_label(tmp_path, tokenizer) -> None:
    """A CSV training file reads 0/1 as integers, a JSON evaluation file may hold "0"/"1": the same two labels."""
    train = load_path(write_rows(tmp_path / "train.csv", labelled([0, 1, 1, 0])))
    for evaluation in (labelled(["1", "0"]), labelled([1.0, 0.0])):
        task = TextClassification(TextClassificationArgs(), tokenizer)
        prepared = task.prepare(DatasetDict({"train": train, "eval": Dataset.from_list(evaluation)}))
        assert task.label_names == ["0", "1"] and task.label2id == {0: 0, 1: 1}
        assert task.preprocess(prepared["eval"], training=False)["labels"][:] == [1, 0]


@pytest.mark.parametrize(
    ("train", "evaluation", "pattern"),
    [
        (
            [0, 1],
            ["a", "1"],
            r"Evaluation labels \['a'\] do not occur in the training data \(training labels: \[0, 1\]\)",
        ),
        ([0, 1], ["01", " 1"], r"Evaluation labels \[' 1', '01'\] .*\(training labels: \[0, 1\]\)"),
        (["neg", "pos"], [0, 1], r"Evaluation labels \[0, 1\] .*\(training labels: \['neg', 'pos'\]\)"),
    ],
)
def test_labels_that_truly_differ_show_their_types(train, evaluation, pattern) -> None:
    with pytest.raises(DataError, match=pattern):
        classify(labelled(train * 2), labelled(evaluation))


def test_integer_labels_keep_their_numeric_order() -> None:
    for labels in ([2, 10, 1], ["2", "10", "1"], [2.0, 10.0, 1.0]):
        task = classify(labelled(labels))
        assert task.label_names == ["1", "2", "10"] and task.label2id == {1: 0, 2: 1, 10: 2}


# Pre-tokenized text classification data: ids the model has, rows it takes.


def tokenized(lengths: list[int], token: int = 5, bad: dict[int, int] | None = None) -> list[dict]:
    """Rows of input_ids of the given lengths; bad: {row: id} puts that id at the end of that row."""
    rows = [{"input_ids": [token] * n, "label": i % 2} for i, n in enumerate(lengths)]
    for row, token_id in (bad or {}).items():
        rows[row]["input_ids"][-1] = token_id
    return rows


@pytest.mark.parametrize(
    ("bad", "found"),
    [({2: 10_000}, r"1 at or above {V}"), ({1: -1, 3: -2}, r"2 negative"), ({1: None}, r"1 missing \(null\)")],
)
def test_pretokenized_ids_outside_the_vocabulary_fail(tokenizer, bad, found) -> None:
    vocabulary, rows = len(tokenizer), len(bad)
    first = min(bad)
    pattern = (
        r"Column 'input_ids' of the train data has token ids outside the model's vocabulary "
        rf"\(0 to {vocabulary - 1}\) in {rows} of 4 rows \(ids: {found.format(V=vocabulary)}\); "
        rf"the first is row {first} \(counting from 0\). "
        r"Tokenize the text with the model's own tokenizer .*truncation=True, max_length=128"
    )
    with pytest.raises(DataError, match=pattern):
        classify(tokenized([4, 4, 4, 4], bad=bad), tokenizer=tokenizer)
    assert classify(tokenized([4, 4, 4, 4], bad={1: vocabulary - 1, 2: 0}), tokenizer=tokenizer).pretokenized


def test_pretokenized_rows_longer_than_the_model_takes_fail(tokenizer) -> None:
    pattern = (
        r"2 of 4 rows of the train data are longer than max_seq_length=128 tokens in 'input_ids' \(up to 200\); the "
        r"first is row 1 \(counting from 0\). The model takes at most 128 tokens per row. Tokenize .*max_length=128\.$"
    )
    with pytest.raises(DataError, match=pattern):
        classify(tokenized([128, 129, 4, 200]), tokenizer=tokenizer)
    with pytest.raises(DataError, match=r"max_length=16, or set max_seq_length up to 128\.$"):
        classify(tokenized([16, 17, 4, 4]), tokenizer=tokenizer, max_seq_length=16)
    assert classify(tokenized([128, 1, 4, 4]), tokenizer=tokenizer).max_length == 128


def test_pretokenized_checks_read_every_split_and_chunk(tokenizer) -> None:
    """The row number counts across the Arrow chunks of a concatenated dataset and follows a selection."""
    from datasets import concatenate_datasets

    pieces = [Dataset.from_list(tokenized([4, 4])), Dataset.from_list(tokenized([4, 4, 4], bad={1: 10_000}))]
    joined = concatenate_datasets(pieces)
    assert joined.with_format("arrow")[:].column("input_ids").num_chunks == 2
    for split, expected in ((joined, 3), (joined.select([4, 3, 2, 1, 0]), 1)):
        raw = DatasetDict({"train": Dataset.from_list(tokenized([4, 4])), "eval": split})
        with pytest.raises(DataError, match=rf"the eval data has token ids .* the first is row {expected} "):
            TextClassification(TextClassificationArgs(), tokenizer).prepare(raw)


def test_pretokenized_ids_must_be_integer_lists_with_or_without_a_tokenizer(tokenizer) -> None:
    """CSV holds lists as text; without a tokenizer the ids and lengths are not checked, their type is."""
    as_text = [{"input_ids": "[101, 2023]", "label": i % 2} for i in range(2)]
    for given in (tokenizer, None):
        with pytest.raises(
            DataError, match=r"Column 'input_ids' of the train data is of type string, not lists of int"
        ):
            classify(as_text, tokenizer=given)
    assert classify(tokenized([400, 4], bad={1: 10_000})).pretokenized


def test_empty_values_are_counted_and_their_rows_named() -> None:
    """The row numbers count from 0 across the Arrow chunks and follow a selection; one empty value is singular."""
    from datasets import concatenate_datasets

    from sm_train.tasks.base import require_columns

    def rows(texts: list[str | None]) -> Dataset:
        return Dataset.from_list([{"text": text, "label": 0} for text in texts])

    one = DatasetDict({"train": rows(["a", "b", None])})
    with pytest.raises(DataError) as raised:
        require_columns(one, ["text"], "train")
    assert str(raised.value) == (
        "Column 'text' of the train data has 1 empty value (row 2, counting from 0); fill or drop that row."
    )
    joined = concatenate_datasets([rows(["a", None]), rows([None, "b", None, None, None, None, "c", None])])
    with pytest.raises(DataError, match=r"has 7 empty values \(rows 1, 2, 4, 5, 6 and 2 more, counting from 0\); "
                       r"fill or drop those rows\.$"):  # fmt: skip
        require_columns(DatasetDict({"train": rows(["a"]), "eval": joined}), ["text"], "train")
    with pytest.raises(DataError, match=r"the eval data has 2 empty values \(rows 0, 2, counting from 0\)"):
        require_columns(DatasetDict({"eval": joined.select([1, 3, 2])}), ["text"], "eval")
