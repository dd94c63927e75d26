"""The Task contract (sm_train/tasks/base.py), for every registered task: its hyperparameters parse beside the job's
and Trainer's, and its hooks run in the documented order on a tiny set, through an evaluation and its outputs."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict

from sm_train.config import parse
from sm_train.data import load_path
from sm_train.device import DeviceInfo
from sm_train.env import from_environ
from sm_train.errors import DataError
from sm_train.tasks import TASKS, Task
from sm_train.tasks.base import Evaluations, length_order
from sm_train.tasks.question_answering import QuestionAnswering
from sm_train.tasks.summarization import Summarization
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
        [("task", name), ("model_name_or_path", str(tmp_path))],
        from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)}),
        DeviceInfo(),
    )
    assert isinstance(cfg.task_args, task_cls.Args) and isinstance(cfg.training_args, task_cls.training_args_class)
    for key, value in task_cls.training_defaults.items():
        assert getattr(cfg.training_args, key) == value
    assert task_cls.metric_names and task_cls.model_class is not None


def _evaluate(task: Task, model, features: Dataset, pad_multiple: int | None, output_dir: Path) -> tuple[dict, object]:
    """An evaluation as the job runs it: the task's Trainer class, collator and metric hooks; its metrics and the
    readable predictions Evaluations kept."""
    args = task.training_args_class(
        output_dir=str(output_dir), report_to="none", use_cpu=True, per_device_eval_batch_size=4,
        **task.training_defaults,
    )  # fmt: skip
    evaluations = Evaluations(task)
    trainer = task.trainer_class(
        model=model,
        args=args,
        eval_dataset=features,
        processing_class=task.tokenizer,
        data_collator=task.collator(model, pad_multiple),
        compute_metrics=evaluations,
        preprocess_logits_for_metrics=task.preprocess_logits,
    )
    return trainer.evaluate(), evaluations.last


# Attributes a runner would plant on a task to hand it the evaluation order or the padding multiple, or to take
# the predictions back: these travel as the hooks' arguments and return values instead.
RUNNER_SET = {"eval_order", "pad_multiple", "predictions"}
TIMINGS = {"loss", "runtime", "samples_per_second", "steps_per_second", "model_preparation_time", "epoch"}


def _computed(results: dict[str, float]) -> dict[str, float]:
    return {k.removeprefix("eval_"): v for k, v in results.items() if k.removeprefix("eval_") not in TIMINGS}


def _planted(task: Task) -> set[str]:
    return RUNNER_SET & set(vars(task))


def _written(directory: Path) -> dict[str, str]:
    return {f.name: f.read_text() for f in sorted(directory.iterdir())} if directory.exists() else {}


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
    assert not _planted(task)
    prepared = task.prepare(raw)  # 2. the raw splits, before any model
    assert isinstance(prepared, DatasetDict) and set(prepared) == {"train", "eval"}
    assert dict(raw) == given and all(raw[s] is given[s] for s in given)  # the given splits are not changed
    json.dumps(task.card())  # read for the run identity, here already
    model = task_cls.model_class.from_pretrained(model_dir, **task.model_kwargs())  # 3.
    task.configure(model, task_cls.training_args_class(output_dir=str(tmp_path / "out"), report_to="none"))
    assert not _planted(task)
    features = {  # 4.
        split: task.preprocess(prepared[split], training=split == "train") for split in ("train", "eval")
    }
    assert "labels" in features["train"].column_names or "start_positions" in features["train"].column_names
    order = length_order(features["eval"])  # 5. as the runner orders evaluation features
    ordered = features["eval"].select(order)
    task.set_eval(prepared["eval"], ordered, order)
    assert not _planted(task)
    # From here on no hook writes on the task: what an evaluation makes comes back as a return value.
    held = dict(vars(task))
    batch = task.collator(model, 8)(list(features["train"].select(range(3))))  # 6. the device's multiple
    assert batch["input_ids"].shape[1] % 8 == 0
    results, predictions = _evaluate(task, model, ordered, 8, tmp_path / "eval")  # 7.
    computed = _computed(results)
    assert computed and set(computed) <= set(task_cls.metric_names)  # the names the metric definitions publish
    task.write_predictions(tmp_path / "predictions", predictions)  # 8.
    json.dumps(task.card())
    assert vars(task).keys() == held.keys() and all(vars(task)[k] is v for k, v in held.items())
    task.write_predictions(tmp_path / "no-evaluation", None)  # no evaluation ran: nothing to write
    assert not (tmp_path / "no-evaluation").exists()

    # A restarted attempt reads the features from the tokenized cache and skips preprocess (4.): nothing after it
    # may depend on state preprocess set. The same hooks in the same order, with the same model, give the same
    # evaluation and the same predictions.
    again = task_cls(dataclasses.replace(args), tokenizer)  # 1.
    examples = again.prepare(raw)["eval"]  # 2.
    assert again.model_kwargs() == task.model_kwargs()  # 3. (the same model)
    again.configure(model, task_cls.training_args_class(output_dir=str(tmp_path / "out"), report_to="none"))
    again.set_eval(examples, ordered, order)  # 5. the cached features, in the same length order
    assert not _planted(again)
    replayed, replayed_predictions = _evaluate(again, model, ordered, 8, tmp_path / "again")  # 6. and 7.
    assert _computed(replayed) == computed
    assert replayed_predictions == predictions
    again.write_predictions(tmp_path / "again-predictions", replayed_predictions)  # 8.
    assert _written(tmp_path / "again-predictions") == _written(tmp_path / "predictions")
    assert again.card() == task.card()


def test_evaluations_give_trainer_a_dict_and_keep_the_last_predictions() -> None:
    """Trainer's compute_metrics contract is a dict of metrics; the readable predictions stay for write_predictions."""
    scored = iter([({"f1": 1.0}, "first"), ({"f1": 0.5}, "second")])

    class Scored(Task):
        def score(self, prediction):
            return next(scored)

    evaluations = Evaluations(Scored(None, None))
    assert evaluations.last is None  # no evaluation yet: write_predictions gets None
    assert evaluations(None) == {"f1": 1.0} and evaluations.last == "first"
    assert evaluations(None) == {"f1": 0.5} and evaluations.last == "second"


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


# Text columns hold strings, in every task; blank or NaN labels are missing values, not a class.


def test_a_parquet_list_column_is_not_text(tmp_path, tokenizer) -> None:
    rows = [{"text": ["a", "b"], "label": i % 2} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    raw = DatasetDict({"train": load_path(tmp_path / "t.parquet")})
    pattern = (
        r"Column 'text' of the train data is of type list<.*string>, not text: .* Join lists into one string "
        r".* or set text_column"
    )
    with pytest.raises(DataError, match=pattern):
        TextClassification(TextClassificationArgs(), tokenizer).prepare(raw)


@pytest.mark.parametrize(
    ("task", "args", "train", "column"),
    [
        (TextClassification, {}, [{"text": 7, "label": "a"}, {"text": 8, "label": "b"}], "text"),
        (
            TextClassification,
            {"text_pair_column": "pair"},
            [{"text": "x", "pair": [1.5], "label": "a"}, {"text": "y", "pair": [2.5], "label": "b"}],
            "pair",
        ),
        (Summarization, {}, [{"dialogue": "x", "summary": ["a", "b"]}], "summary"),
        (
            QuestionAnswering,
            {"max_seq_length": 64, "doc_stride": 24},
            [{**r, "question": [r["question"]]} for r in tiny.qa_rows(2)],
            "question",
        ),
    ],
)
def test_text_columns_must_be_strings(tokenizer, task, args, train, column) -> None:
    raw = tiny.splits(train, train)
    with pytest.raises(DataError, match=rf"Column '{column}' of the train data is of type .+, not text"):
        task(task.Args(**args), tokenizer).prepare(raw)


def test_evaluation_text_columns_are_checked_too(tokenizer) -> None:
    evaluation = [{"text": ["x"], "label": "a"}]
    raw = tiny.splits([{"text": "x", "label": "a"}, {"text": "y", "label": "b"}], evaluation)
    with pytest.raises(DataError, match=r"Column 'text' of the eval data is of type list<"):
        TextClassification(TextClassificationArgs(), tokenizer).prepare(raw)


@pytest.mark.parametrize("empty", ["", "  ", float("nan")])
def test_blank_or_nan_labels_are_missing_not_a_class(tokenizer, empty) -> None:
    rows = [{"text": f"t{i}", "label": "a" if i % 2 else "b"} for i in range(4)]
    if isinstance(empty, float):
        rows = [{**r, "label": float(i % 2)} for i, r in enumerate(rows)]
    rows[2] = {**rows[2], "label": empty}
    with pytest.raises(DataError, match=r"Column 'label' of the train data has 1 empty labels \(blank text or NaN\)"):
        TextClassification(TextClassificationArgs(), tokenizer).prepare(tiny.splits(rows))


def test_labels_named_like_missing_values_stay_labels_blank_ones_do_not(tmp_path, tokenizer) -> None:
    """CSV: only an empty field is missing (a null); "NA", "null", "nan" and "None" are class names. JSON agrees,
    and a blank string there is missing too, as the empty CSV field is."""
    rows = [{"text": f"t{i}", "label": label} for i, label in enumerate(["NA", "null", "nan", "None", "x", "NA"])]
    for name in ("t.csv", "t.jsonl"):
        raw = DatasetDict({"train": load_path(write_rows(tmp_path / name, rows))})
        task = TextClassification(TextClassificationArgs(), tokenizer)
        task.prepare(raw)
        assert task.label_names == ["NA", "None", "nan", "null", "x"]
    raw = DatasetDict({"train": load_path(write_rows(tmp_path / "blank.jsonl", [*rows, {"text": "t", "label": " "}]))})
    with pytest.raises(DataError, match=r"Column 'label' of the train data has 1 empty labels"):
        TextClassification(TextClassificationArgs(), tokenizer).prepare(raw)


# A test set: predicted through the same hooks, with or without its labels (answers, summaries).

LABELS = {"text-classification": "label", "question-answering": "answers", "summarization": "summary"}


def test_every_registered_task_names_its_labels() -> None:
    assert set(LABELS) == set(TASKS)


@pytest.mark.parametrize("labelled", [True, False])
@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_test_set_is_predicted_row_by_row(name, labelled, tmp_path) -> None:
    """After the final evaluation the runner hands the test rows to set_eval, predicts through Trainer and writes
    test_predictions.jsonl: one line per row in the data's order, each with its id; test_* metrics only when the
    test set has labels."""
    from transformers import AutoTokenizer

    from sm_train.training import predict

    task_cls = TASKS[name]
    rows, build_model, hyperparameters = TINY[name]
    model_dir = build_model(tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    test = [{**row, "id": f"t{i}"} for i, row in enumerate(rows(6, seed=2))]
    if not labelled:
        test = [{k: v for k, v in row.items() if k != LABELS[name]} for row in test]
    raw = DatasetDict({"train": Dataset.from_list(rows(12)), "test": Dataset.from_list(test)})
    task = task_cls(task_cls.Args(**hyperparameters), tokenizer)
    prepared = task.prepare(raw)
    assert (LABELS[name] in prepared["test"].column_names) == labelled
    model = task_cls.model_class.from_pretrained(model_dir, **task.model_kwargs())
    task.configure(model, task_cls.training_args_class(output_dir=str(tmp_path / "out"), report_to="none"))
    features = task.preprocess(prepared["test"], training=False)
    order = length_order(features)
    task.set_eval(prepared["test"], features.select(order), order)
    args = task.training_args_class(output_dir=str(tmp_path / "p"), report_to="none", use_cpu=True,
                                    per_device_eval_batch_size=4, **task.training_defaults)  # fmt: skip
    evaluations = Evaluations(task)
    trainer = task.trainer_class(model=model, args=args, processing_class=tokenizer, compute_metrics=evaluations,
                                 data_collator=task.collator(model, None),
                                 preprocess_logits_for_metrics=task.preprocess_logits)  # fmt: skip
    metrics, predictions = predict(trainer, features.select(order), evaluations)
    scored = {k for k in metrics if k.removeprefix("test_") in task_cls.metric_names}
    assert bool(scored) == labelled and all(k.startswith("test_") for k in metrics)
    task.write_predictions(tmp_path / "data", predictions, split="test")
    written = [json.loads(line) for line in (tmp_path / "data" / "test_predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in written] == [f"t{i}" for i in range(6)]
    keys = {"text-classification": {"id", "label", "score"}, "question-answering": {"id", "answer", "score", "start",
            "end"}, "summarization": {"id", "summary"}}  # fmt: skip
    assert all(set(row) == keys[name] for row in written)


# Text classification's problem types: read off the labels, or set; mixed shapes fail naming the first row.


@pytest.mark.parametrize(
    ("labels", "args", "problem", "names"),
    [
        (["pos", "neg", "pos"], {}, "single_label_classification", ["neg", "pos"]),
        ([1.0, 2.0, 1.0], {}, "single_label_classification", ["1", "2"]),  # whole numbers are classes
        ([0.5, 4.25, 3.0], {}, "regression", []),
        (["0.5", "4.25"], {}, "regression", []),  # numbers as text (a JSON string) read as numbers
        ([1, 4, 3], {"problem_type": "regression"}, "regression", []),
        ([["sport", "news"], ["news"], []], {}, "multi_label_classification", ["news", "sport"]),
        ([[2, 1], [1]], {}, "multi_label_classification", ["1", "2"]),
        (["0.5", "4.25"], {"problem_type": "single_label_classification"}, "single_label_classification",
         ["0.5", "4.25"]),
    ],
)  # fmt: skip
def test_the_problem_type_is_read_off_the_labels(labels, args, problem, names) -> None:
    task = classify(labelled(labels), **args)
    assert (task.problem_type, task.label_names) == (problem, names)
    assert task.card() == {"labels": names, "problem_type": problem}
    kwargs = task.model_kwargs()
    assert kwargs["problem_type"] == problem and kwargs["num_labels"] == (len(names) or 1)
    assert ("id2label" in kwargs) == (problem != "regression")  # regression saves no label names


def test_multi_label_lists_in_a_csv_are_json_text(tmp_path, tokenizer) -> None:
    """A CSV holds a list only as text: a JSON list there is a list of labels; labels become multi-hot floats."""
    rows = labelled([json.dumps(["sport", "news"]), json.dumps(["news"]), "[]"])
    raw = DatasetDict({"train": load_path(write_rows(tmp_path / "t.csv", rows))})
    task = TextClassification(TextClassificationArgs(), tokenizer)
    features = task.preprocess(task.prepare(raw)["train"], training=True)
    assert task.problem_type == "multi_label_classification" and task.label_names == ["news", "sport"]
    assert features["labels"][:] == [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
    assert str(features.features["labels"].feature.dtype) == "float32"  # BCE with logits takes float labels


def test_regression_labels_are_float32_numbers(tokenizer) -> None:
    task = classify(labelled([0.5, 4.25, 3]), tokenizer=tokenizer)
    features = task.preprocess(Dataset.from_list(labelled([0.5, 4.25, 3])), training=True)
    assert features["labels"][:] == [0.5, 4.25, 3.0] and features.features["labels"].dtype == "float32"


@pytest.mark.parametrize(
    ("train", "evaluation", "args", "pattern"),
    [
        (['["a"]', "b", "c"], None, {},
         r"Column 'label' of the train data mixes lists of labels \(row 0: '\[\"a\"\]'\) and single labels \(row 1: "
         r"'b'\): give every row a list"),
        (["0.5", "x", "1.5"], None, {},
         r"Column 'label' of the train data mixes numbers that are not whole \(row 0: '0.5'\) with text "
         r"\(row 1: 'x'\): set problem_type=single_label_classification to read them all as class names"),
        ([["a"], ["b"]], ["a", "b"], {},
         r"Column 'label' of the eval data holds one label per row \(row 0: 'a'\), but the labels are lists"),
        (["a", "b"], [["a"], ["b"]], {},
         r"Column 'label' of the eval data holds lists of labels \(row 0: \[\"a\"\]\), but the labels are one per "
         r"row"),
        ([0.5, 1.5], [0.5, "x"], {},
         r"Column 'label' of the eval data holds text that is not a number \(row 1: 'x'\)"),
        (["a", "b"], None, {"problem_type": "multi_label_classification"},
         r"problem_type=multi_label_classification needs a list of labels per row .* column 'label' of the train "
         r"data holds one label per row \(row 0: 'a'\)"),
        ([["a"], ["b"]], None, {"problem_type": "single_label_classification"},
         r"Column 'label' of the train data holds a list of labels per row \(row 0: \[\"a\"\]\), but "
         r"problem_type=single_label_classification needs one label per row"),
        ([0.5, 1.5], None, {"problem_type": "single_label_classification"},
         r"Column 'label' of the train data holds numbers that are not whole \(row 0: 0.5\): classes must be integers "
         r"or text. Set problem_type=regression"),
        (["a", "1"], None, {"problem_type": "regression"},
         r"Column 'label' of the train data holds text that is not a number \(row 0: 'a'\)"),
        ([["a", None], ["b"]], None, {}, r"Column 'label' of the train data has lists of labels with empty \(null\)"),
        ([[1, 0.5], [2]], None, {}, r"Column 'label' of the train data has lists whose entries are not class labels "
         r"\(\[0.5\]\)"),
        ([["a"], ["b"]], [["a", "c"]], {}, r"Evaluation labels \['c'\] do not occur in the training data"),
    ],
)  # fmt: skip
def test_labels_of_mixed_shapes_fail_naming_the_column_split_and_row(tmp_path, train, evaluation, args, pattern):
    def split(values: list, name: str) -> Dataset:
        """Text, or numbers and text mixed, as a CSV column reads them (text); other values as JSON lines do."""
        if all(isinstance(v, str | float) for v in values) and any(isinstance(v, str) for v in values):
            return load_path(write_rows(tmp_path / f"{name}.csv", labelled(values)))
        return Dataset.from_list(labelled(values))

    raw = DatasetDict({"train": split(train, "train")})
    if evaluation is not None:
        raw["eval"] = split(evaluation, "eval")
    with pytest.raises(DataError, match=pattern):
        TextClassification(TextClassificationArgs(**args), None).prepare(raw)


def test_scores_become_readable_rows_in_the_data_order() -> None:
    """Regression: the number; multi-label: every label over 0.5, likeliest first; single: the label and its
    probability. Rows come back in the data's order (the features ran longest first), led by their ids."""
    import numpy as np
    from transformers import EvalPrediction

    rows = Dataset.from_list([{"id": f"r{i}", "text": "x", "label": label} for i, label in enumerate([1.5, 0.5])])
    task = classify(labelled([1.5, 0.5]))
    task.set_eval(rows, rows, np.array([1, 0]))  # the first feature is row 1
    metrics, predictions = task.score(EvalPrediction(predictions=np.array([[0.25], [2.0]]), label_ids=None))
    assert metrics == {} and predictions == [{"id": "r0", "score": 2.0}, {"id": "r1", "score": 0.25}]
    metrics, _ = task.score(EvalPrediction(predictions=np.array([[0.5], [1.5]]), label_ids=np.array([0.5, 1.5])))
    assert metrics["mse"] == 0.0 and metrics["pearson"] == pytest.approx(1.0)

    task = classify(labelled([["a", "b"], ["c"]]))
    task.set_eval(rows, rows, None)
    logits = np.array([[2.0, -3.0, 0.5], [-1.0, -1.0, -1.0]])
    metrics, predictions = task.score(EvalPrediction(predictions=logits, label_ids=np.array([[1, 0, 1], [0, 0, 0]])))
    assert [[label["label"] for label in row["labels"]] for row in predictions] == [["a", "c"], []]
    assert predictions[0]["labels"][0]["score"] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert metrics["exact_match"] == 1.0 and metrics["f1_micro"] == 1.0

    task = classify(labelled(["neg", "pos"]))
    task.set_eval(Dataset.from_list(labelled(["neg", "pos"])), rows, None)  # no id column: the row numbers
    _, predictions = task.score(EvalPrediction(predictions=np.array([[0.0, 0.0], [3.0, 1.0]]), label_ids=None))
    second = {"id": 1, "label": "neg", "score": pytest.approx(1 / (1 + np.exp(-2.0)))}
    assert predictions == [{"id": 0, "label": "neg", "score": 0.5}, second]


def test_without_training_the_model_labels_are_predicted(tokenizer) -> None:
    """do_train=false: the model keeps its head; its label names (id2label) map the data's labels, which must be
    among them; a model without names takes the data's, in their sorted order; its problem type must fit."""
    from transformers import BertConfig

    def predicting(labels: list, config: BertConfig, **args) -> TextClassification:
        task = TextClassification(TextClassificationArgs(**args), tokenizer)
        task.prepare(DatasetDict({"eval": Dataset.from_list(labelled(labels))}))
        assert task.model_kwargs() == {}  # the model as saved
        task.configure(type("Model", (), {"config": config})(), None)
        return task

    named = BertConfig(id2label={0: "neg", 1: "neutral", 2: "pos"}, label2id={"neg": 0, "neutral": 1, "pos": 2})
    task = predicting(["pos", "pos", "neg"], named)  # one label fewer than the model knows: its ids still hold
    assert task.label_names == ["neg", "neutral", "pos"] and task.label2id == {"neg": 0, "pos": 2}
    with pytest.raises(DataError, match=r"Labels \['meh'\] of the data are not labels of the model \(its id2label"):
        predicting(["pos", "meh"], named)
    unnamed = BertConfig(num_labels=2)
    assert predicting(["b", "a"], unnamed).label_names == ["a", "b"] and unnamed.id2label == {0: "a", 1: "b"}
    with pytest.raises(DataError, match=r"The data has 3 labels \['a', 'b', 'c'\], but the model has 2 outputs"):
        predicting(["a", "b", "c"], BertConfig(num_labels=2))
    regression = BertConfig(num_labels=1, problem_type="regression")
    assert predicting([1, 4, 2], regression).problem_type == "regression"  # whole numbers: the model's kind
    with pytest.raises(DataError, match=r"The model is a regression model \(1 outputs\), but the data's labels make "):
        predicting([["a"], ["b"]], regression)
    with pytest.raises(DataError, match=r"problem_type=single_label_classification, but the model is a regression"):
        predicting([1, 4], regression, problem_type="single_label_classification")
